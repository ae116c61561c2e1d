"""SAML Web Browser SSO through "SITHS eID på denna enhet", over real sockets.

The SP here is pysaml2 configured only from the IdP's published metadata; the card is a TLS
client certificate presented to the IdP's certificate listener.
"""

from __future__ import annotations

import re
import subprocess

import httpx
from defusedxml import ElementTree
from saml2 import samlp

from tests.conftest import IdpUnderTest
from tests.helpers.flows import login_with_card, open_login, posted_form
from tests.helpers.support import browser, parse_page, reason_code, tls_context

SAMBI_LOA = "http://id.sambi.se/loa/loa3"
EID_LOA = "http://id.elegnamnden.se/loa/1.0/loa3"


def test_metadata_is_signed_and_names_the_service(idp: IdpUnderTest) -> None:
    response = httpx.get(f"{idp.base_url}/saml/metadata", verify=tls_context(idp.ca_file))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/samlmetadata+xml")
    xml = response.text
    root = ElementTree.fromstring(xml.encode())
    assert root.get("validUntil")
    names = root.findall(".//{urn:oasis:names:tc:SAML:metadata:ui}DisplayName")
    assert "Göteborgs Stads Åtkomsttjänst" in [name.text for name in names]
    assert f"{idp.base_url}/saml/sso/redirect" in xml and f"{idp.base_url}/saml/sso/post" in xml
    path = idp.work_dir / "metadata-check.xml"
    path.write_text(xml, encoding="utf-8")
    verified = subprocess.run(
        [
            "xmlsec1",
            "--verify",
            "--pubkey-cert-pem",
            str(idp.pki.idp_signing_cert),
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    tampered = idp.work_dir / "metadata-tampered.xml"
    tampered.write_text(xml.replace("/saml/sso/post", "/saml/sso/evil"), encoding="utf-8")
    rejected = subprocess.run(
        [
            "xmlsec1",
            "--verify",
            "--pubkey-cert-pem",
            str(idp.pki.idp_signing_cert),
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor",
            str(tampered),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rejected.returncode != 0


def test_chooser_offers_both_methods_as_plain_links(idp: IdpUnderTest) -> None:
    login_url, _ = idp.sp.login_url()
    with browser(idp.ca_file) as client:
        page = open_login(client, login_url, idp.base_url)
    assert page.status_code == 200
    assert "Jag legitimerar mig hos Göteborgs Stads Åtkomsttjänst" in page.text
    assert "Välj legitimeringsmetod" in page.text
    assert re.search(r'<a class="method" href="[^"]*cert-login\?ref=', page.text)
    assert "SITHS eID på annan enhet" in page.text
    # Works without JavaScript: the methods are plain links, and the one script only shows
    # the chooser's own address in the address bar (a reload then does not resend the request).
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", page.text, flags=re.DOTALL)
    assert scripts == [
        re.search(r'history\.replaceState\(null, "", "/login\?ref=[\w-]+"\);', scripts[0]).group(0)
    ]


def test_login_with_card_gives_signed_sambi_assertion(idp: IdpUnderTest) -> None:
    login_url, request_id = idp.sp.login_url(relay_state="rs-123")
    with browser(idp.ca_file, idp.card("anna")) as client:
        final = login_with_card(client, login_url, idp.base_url)
    assert final.status_code == 200, final.text
    action, fields = posted_form(final)
    assert action == idp.sp.acs_url
    assert fields["RelayState"] == "rs-123"
    import base64

    xml = base64.b64decode(fields["SAMLResponse"]).decode()
    # Both the Response and the Assertion carry their own signature, RSA-SHA256.
    assert xml.count("<ds:SignatureValue") == 2 or xml.count("SignatureValue>") >= 4
    assert "rsa-sha256" in xml
    parsed = idp.sp.parse(fields["SAMLResponse"], request_id)
    assert parsed.in_response_to == request_id
    assert parsed.ava["http://sambi.se/attributes/1/employeeHsaId"] == ["SE2120001355-E0001"]
    assert parsed.ava["http://sambi.se/attributes/1/givenName"] == ["Anna"]
    assert parsed.ava["http://sambi.se/attributes/1/surname"] == ["Andersson"]
    assertion = parsed.assertion
    assert assertion.conditions.audience_restriction[0].audience[0].text == idp.sp.entity_id
    statement = assertion.authn_statement[0]
    assert statement.authn_context.authn_context_class_ref.text == SAMBI_LOA
    assert statement.authn_instant and statement.session_index
    confirmation = assertion.subject.subject_confirmation[0].subject_confirmation_data
    assert confirmation.recipient == idp.sp.acs_url
    assert confirmation.in_response_to == request_id
    assert confirmation.not_on_or_after
    assert assertion.subject.name_id.format.endswith("transient")


def test_card_listener_answers_with_the_response_form_itself(idp: IdpUnderTest) -> None:
    """A card that names one HSA-ID finishes the login on the card listener's origin: its
    answer is the page that posts the Response to the SP's ACS (no trip through
    /login/continue), with the same headers as every page, and the SSO cookie, which the main
    origin then honours (cookies are per host, not per port)."""
    login_url, request_id = idp.sp.login_url()
    with browser(idp.ca_file, idp.card("anna")) as client:
        chooser = open_login(client, login_url, idp.base_url)
        href = parse_page(chooser.text).links["method-this-device"]
        answer = client.get(href)
        assert answer.status_code == 200, answer.text[:2000]
        assert str(answer.request.url).startswith(f"{idp.cert_login_url}/cert-login?ref=")
        action, fields = posted_form(answer)
        assert action == idp.sp.acs_url
        assert idp.sp.parse(fields["SAMLResponse"], request_id).in_response_to == request_id
        csp = answer.headers["content-security-policy"]
        nonce = re.search(r"'nonce-([^']+)'", csp)
        assert nonce and f'<script nonce="{nonce.group(1)}">' in answer.text, csp
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["strict-transport-security"].startswith("max-age=")
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("__Host-idp-sso=")
        )
        assert "secure" in cookie.lower() and "path=/" in cookie.lower(), cookie
        # The main origin knows the session: the next SP gets in without the card.
        second_url, second_id = idp.eid_sp.login_url()
        _action, again = posted_form(open_login(client, second_url, idp.base_url))
        assert idp.eid_sp.parse(again["SAMLResponse"], second_id).in_response_to == second_id


def test_swedish_eid_profile_releases_only_what_is_requested(idp: IdpUnderTest) -> None:
    login_url, request_id = idp.eid_sp.login_url()
    with browser(idp.ca_file, idp.card("anna")) as client:
        final = login_with_card(client, login_url, idp.base_url)
    _action, fields = posted_form(final)
    parsed = idp.eid_sp.parse(fields["SAMLResponse"], request_id)
    released = {
        attribute.name: [value.text for value in attribute.attribute_value]
        for statement in parsed.assertion.attribute_statement
        for attribute in statement.attribute
    }
    assert released == {
        "urn:oid:1.2.752.29.6.2.1": ["SE2120001355-E0001"],
        "urn:oid:2.16.840.1.113730.3.1.241": ["Anna Andersson"],
    }
    assert len(parsed.assertion.attribute_statement) == 1
    assert len(parsed.assertion.authn_statement) == 1
    statement = parsed.assertion.authn_statement[0]
    assert statement.authn_context.authn_context_class_ref.text == EID_LOA
    name_id = parsed.assertion.subject.name_id
    assert name_id.format.endswith("persistent")
    assert "SE2120001355" not in name_id.text  # a pseudonym, not the HSA-ID


def test_sso_session_lets_a_second_sp_in_without_the_card(idp: IdpUnderTest) -> None:
    first_url, _ = idp.sp.login_url()
    with browser(idp.ca_file, idp.card("bertil")) as client:
        login_with_card(client, first_url, idp.base_url)
        second_url, request_id = idp.eid_sp.login_url()
        answer = open_login(client, second_url, idp.base_url)
        action, fields = posted_form(answer)
        assert action == idp.eid_sp.acs_url
        parsed = idp.eid_sp.parse(fields["SAMLResponse"], request_id)
        assert parsed.ava["urn:oid:1.2.752.29.6.2.1"] == ["SE2120001355-E0002"]
        assert parsed.assertion.conditions.audience_restriction[0].audience[0].text == (
            idp.eid_sp.entity_id
        )
        # ForceAuthn brings the chooser back despite the session.
        forced_url, _ = idp.sp.login_url(force_authn=True)
        forced = open_login(client, forced_url, idp.base_url)
        assert "Välj legitimeringsmetod" in forced.text


def test_is_passive_without_session_gets_no_passive_status(idp: IdpUnderTest) -> None:
    login_url, request_id = idp.sp.login_url(is_passive=True)
    with browser(idp.ca_file) as client:
        answer = open_login(client, login_url, idp.base_url)
    action, fields = posted_form(answer)
    assert action == idp.sp.acs_url
    import base64

    response = samlp.response_from_string(base64.b64decode(fields["SAMLResponse"]).decode())
    assert response.in_response_to == request_id
    assert response.status.status_code.status_code.value == samlp.STATUS_NO_PASSIVE
    assert not response.assertion


def test_post_binding_request_logs_in(idp: IdpUnderTest) -> None:
    sso, form, request_id = idp.sp.post_login_form()
    with browser(idp.ca_file, idp.card("anna")) as client:
        from tests.helpers.flows import choose_this_device, follow

        chooser = follow(client, client.post(sso, data=form), idp.base_url)
        final = choose_this_device(client, chooser, idp.base_url)
    _action, fields = posted_form(final)
    parsed = idp.sp.parse(fields["SAMLResponse"], request_id)
    assert parsed.ava["http://sambi.se/attributes/1/employeeHsaId"] == ["SE2120001355-E0001"]
    assert fields["RelayState"] == "post-state"


def test_card_with_two_organisations_asks_which_service_id(idp: IdpUnderTest) -> None:
    login_url, request_id = idp.sp.login_url()
    with browser(idp.ca_file, idp.card("erik")) as client:
        choice = login_with_card(client, login_url, idp.base_url)
        assert "Välj tjänste-id" in choice.text
        assert "SE2120001355-E0005" in choice.text and "SE5567000010-P0001" in choice.text
        ref = re.search(r'name="ref" value="([^"]+)"', choice.text).group(1)
        refused = client.post(
            f"{idp.base_url}/login/choose", data={"ref": ref, "hsa_id": "SE2120001355-E0001"}
        )
        assert reason_code(refused.text) == "hsa_id_not_offered"
        chosen = client.post(
            f"{idp.base_url}/login/choose", data={"ref": ref, "hsa_id": "SE5567000010-P0001"}
        )
        from tests.helpers.flows import follow

        final = follow(client, chosen, idp.base_url)
    _action, fields = posted_form(final)
    parsed = idp.sp.parse(fields["SAMLResponse"], request_id)
    assert parsed.ava["http://sambi.se/attributes/1/employeeHsaId"] == ["SE5567000010-P0001"]

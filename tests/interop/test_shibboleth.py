"""Shibboleth SP 3 (Debian's shibd + mod_shib behind a private Apache) against the IdP.

The peer knows the IdP only from its signed metadata; the IdP knows the peer from the
metadata it generates plus the RequestedAttributes of the integration page. The browser is
the httpx stand-in presenting a SITHS card to the IdP's certificate listener and posting the
forms it is given. The peer uses Shibboleth's ``blockUnsolicited`` policy.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import IdpUnderTest
from tests.helpers.flows import choose_this_device
from tests.helpers.support import browser
from tests.interop.shib_peer import ShibbolethPeer, session_page_values, start_shibboleth_peer
from tests.interop.sp_peer_steps import (
    back_to_service,
    follow_redirects,
    integration_snippets,
    post_saml_form,
    press_cancel,
    requested_authn_context,
    saml_form,
)

EID_LOA = "http://id.elegnamnden.se/loa/1.0/loa"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"


@pytest.fixture(scope="module")
def shib_peer(idp: IdpUnderTest) -> Iterator[ShibbolethPeer]:
    attribute_map, requested_attributes = integration_snippets(idp.base_url, idp.ca_file)[
        "Shibboleth SP 3"
    ]
    peer = start_shibboleth_peer(
        idp_metadata_xml=idp.idp_metadata_file.read_text(encoding="utf-8"),
        idp_metadata_signer=idp.pki.idp_signing_cert,
        guide_attribute_map=attribute_map,
        guide_requested_attributes=requested_attributes,
        sp_metadata_dir=idp.sp_metadata_dir,
        tls_cert=idp.pki.tls_server_cert,
        tls_key=idp.pki.tls_server_key,
        ca_file=idp.ca_file,
    )
    try:
        yield peer
    finally:
        peer.stop()


def shib_open(client: httpx.Client, peer: ShibbolethPeer, **params: str) -> httpx.Response:
    """Start a login at the SP and land on whatever the IdP shows first."""
    return shib_open_seen(client, peer, **params)[0]


def shib_open_seen(
    client: httpx.Client, peer: ShibbolethPeer, **params: str
) -> tuple[httpx.Response, str]:
    """:func:`shib_open`, and the AuthnRequest XML Shibboleth sent."""
    requests: list[str] = []
    page = follow_redirects(client, client.get(peer.login_url(**params)), requests)
    assert len(requests) == 1, requests
    return page, requests[0]


def shib_card_login(
    client: httpx.Client, peer: ShibbolethPeer, idp: IdpUnderTest, **params: str
) -> httpx.Response:
    """A whole login through "SITHS eID på denna enhet"; returns the SP's Session page."""
    return shib_card_login_seen(client, peer, idp, **params)[0]


def shib_card_login_seen(
    client: httpx.Client, peer: ShibbolethPeer, idp: IdpUnderTest, **params: str
) -> tuple[httpx.Response, str]:
    """:func:`shib_card_login`, and the Response XML the browser carried to the SP."""
    chooser = shib_open(client, peer, **params)
    assert "Välj legitimeringsmetod" in chooser.text, chooser.text[:2000]
    answer = choose_this_device(client, chooser, idp.base_url)
    form = saml_form(answer)
    assert form is not None, answer.text[:2000]
    response_xml = base64.b64decode(form["fields"]["SAMLResponse"]).decode()
    return post_saml_form(client, answer, peer.acs_url), response_xml


def shib_error(page: httpx.Response) -> dict[str, str]:
    """Status and Sub-Status from Shibboleth's error page (sessionError.html)."""
    assert page.status_code >= 400 or "Status" in page.text, page.text[:2000]
    values = session_page_values(page.text)
    return {"status": values.get("Status", ""), "sub_status": values.get("Sub-Status", "")}


def test_shib_login_with_card_shows_attributes(idp: IdpUnderTest, shib_peer: ShibbolethPeer):
    with browser(idp.ca_file, idp.card("anna")) as client:
        session = shib_card_login(client, shib_peer, idp)
    assert session.status_code == 200, shib_peer.log()[-3000:]
    values = session_page_values(session.text)
    # Released because the registered metadata carries the integration guide's
    # RequestedAttributes, and named because the attribute map has the guide's entries.
    assert values["employeeHsaId"] == "SE2120001355-E0001", session.text
    assert values["displayName"] == "Anna Andersson"
    assert values["givenName"] == "Anna"
    assert values["sn"] == "Andersson"
    assert values["Identity Provider"] == f"{idp.base_url}/saml/metadata"
    assert values["Authentication Context Class"] == f"{EID_LOA}3"
    # The eID profile's default NameID: pairwise persistent, not the HSA-ID.
    assert "SE2120001355" not in values["persistent-id"]
    assert "transient-id" not in values


def test_shib_assertion_is_encrypted_and_decrypted(idp: IdpUnderTest, shib_peer: ShibbolethPeer):
    """The generated metadata has an encryption key: the Assertion travels encrypted and
    Shibboleth decrypts it."""
    with browser(idp.ca_file, idp.card("bertil")) as client:
        session, response_xml = shib_card_login_seen(client, shib_peer, idp)
    assert "EncryptedAssertion" in response_xml
    assert "SE2120001355-E0002" not in response_xml
    assert session_page_values(session.text)["employeeHsaId"] == "SE2120001355-E0002"


def test_shib_single_logout_round_trips(idp: IdpUnderTest, shib_peer: ShibbolethPeer):
    with browser(idp.ca_file, idp.card("bertil")) as client:
        session = shib_card_login(client, shib_peer, idp)
        assert session_page_values(session.text)["employeeHsaId"] == "SE2120001355-E0002"
        page = follow_redirects(client, client.get(shib_peer.logout_url()))
        # The IdP answers with a LogoutResponse, by redirect or by an auto-posting form.
        while saml_form(page) is not None:
            page = post_saml_form(client, page)
        assert page.url.port == shib_peer.port, (page.url, page.text[:2000])
        assert "A valid session was not found" in page.text, page.text[:2000]
        # Both ends forgot the session: a new login goes to the chooser again.
        chooser = shib_open(client, shib_peer)
        assert "Välj legitimeringsmetod" in chooser.text


def test_shib_press_cancel_comes_back_as_error(idp: IdpUnderTest, shib_peer: ShibbolethPeer):
    with browser(idp.ca_file, idp.card("anna")) as client:
        chooser = shib_open(client, shib_peer)
        idp_page = press_cancel(client, chooser)
        assert 'lang="sv"' in idp_page.text and 'lang="en"' in idp_page.text
        sp_page = back_to_service(client, idp_page, shib_peer.acs_url)
    assert shib_error(sp_page) == {
        "status": RESPONDER,
        "sub_status": "http://id.elegnamnden.se/status/1.0/cancel",
    }


def test_shib_cancel_on_service_id_choice_comes_back_as_error(
    idp: IdpUnderTest, shib_peer: ShibbolethPeer
):
    with browser(idp.ca_file, idp.card("erik")) as client:
        chooser = shib_open(client, shib_peer)
        choice = choose_this_device(client, chooser, idp.base_url)
        assert "Välj tjänste-id" in choice.text, choice.text[:2000]
        idp_page = press_cancel(client, choice)
        sp_page = back_to_service(client, idp_page, shib_peer.acs_url)
    assert shib_error(sp_page) == {
        "status": RESPONDER,
        "sub_status": "http://id.elegnamnden.se/status/1.0/cancel",
    }


def test_shib_refused_card_comes_back_as_error(idp: IdpUnderTest, shib_peer: ShibbolethPeer):
    with browser(idp.ca_file, idp.card("expired")) as client:
        chooser = shib_open(client, shib_peer)
        idp_page = choose_this_device(client, chooser, idp.base_url)
        assert "certificate_expired" in idp_page.text, idp_page.text[:2000]
        sp_page = back_to_service(client, idp_page, shib_peer.acs_url)
    assert shib_error(sp_page) == {
        "status": RESPONDER,
        "sub_status": "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed",
    }


@pytest.mark.parametrize(
    ("requested", "comparison"), [(f"{EID_LOA}3", "exact"), (f"{EID_LOA}2", "minimum")]
)
def test_shib_loa_met(idp: IdpUnderTest, shib_peer: ShibbolethPeer, requested, comparison):
    with browser(idp.ca_file, idp.card("anna")) as client:
        session = shib_card_login(
            client,
            shib_peer,
            idp,
            authnContextClassRef=requested,
            authnContextComparison=comparison,
        )
    values = session_page_values(session.text)
    assert values["Authentication Context Class"] == f"{EID_LOA}3", session.text
    assert values["employeeHsaId"] == "SE2120001355-E0001"


@pytest.mark.parametrize(
    ("requested", "comparison"),
    [
        (f"{EID_LOA}4", "exact"),
        (f"{EID_LOA}4", "minimum"),
        (f"{EID_LOA}3", "better"),
        ("urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport", "exact"),
    ],
)
def test_shib_loa_not_met_comes_back_as_no_authn_context(
    idp: IdpUnderTest, shib_peer: ShibbolethPeer, requested: str, comparison: str
):
    with browser(idp.ca_file, idp.card("anna")) as client:
        answer, request = shib_open_seen(
            client, shib_peer, authnContextClassRef=requested, authnContextComparison=comparison
        )
        assert requested_authn_context(request) == (comparison, [requested]), request
        # Answered at once, before any card: an auto-posting form to the SP's ACS.
        sp_page = post_saml_form(client, answer, shib_peer.acs_url)
    assert shib_error(sp_page) == {
        "status": RESPONDER,
        "sub_status": "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext",
    }


def test_shib_transient_name_id_differs_per_login(idp: IdpUnderTest, shib_peer: ShibbolethPeer):
    seen = []
    for _ in range(2):
        with browser(idp.ca_file, idp.card("anna")) as client:
            values = session_page_values(
                shib_card_login(client, shib_peer, idp, NameIDFormat=TRANSIENT).text
            )
        assert "persistent-id" not in values, values
        seen.append(values["transient-id"])
    assert seen[0] != seen[1]
    assert all("SE2120001355" not in value for value in seen)


def test_shib_persistent_name_id_is_stable_and_pairwise(
    idp: IdpUnderTest, shib_peer: ShibbolethPeer
):
    seen = []
    for card in ("anna", "anna", "bertil"):
        with browser(idp.ca_file, idp.card(card)) as client:
            values = session_page_values(
                shib_card_login(client, shib_peer, idp, NameIDFormat=PERSISTENT).text
            )
        assert "transient-id" not in values, values
        seen.append(values["persistent-id"])
    # IdP!SP!value: qualified by both entity IDs, stable for Anna, another value for Bertil.
    assert seen[0] == seen[1] != seen[2]
    assert seen[0].startswith(f"{idp.base_url}/saml/metadata!{shib_peer.entity_id}!")
    assert "SE2120001355" not in seen[0]


def test_shib_force_authn_brings_the_chooser_back(idp: IdpUnderTest, shib_peer: ShibbolethPeer):
    """Shibboleth writes ForceAuthn as xs:boolean "1"; the IdP honours it over its session."""
    with browser(idp.ca_file, idp.card("anna")) as client:
        shib_card_login(client, shib_peer, idp)
        again = shib_open(client, shib_peer)  # the IdP's session answers at once
        assert saml_form(again) is not None, again.text[:2000]
        forced, request = shib_open_seen(client, shib_peer, forceAuthn="true")
        assert 'ForceAuthn="1"' in request, request
        assert "Välj legitimeringsmetod" in forced.text, forced.text[:2000]


def test_shib_response_posted_by_another_browser_is_refused(
    idp: IdpUnderTest, shib_peer: ShibbolethPeer
):
    """blockUnsolicited: a Response is accepted only in the browser whose login asked for it."""
    with browser(idp.ca_file, idp.card("anna")) as client, browser(idp.ca_file) as other:
        chooser = shib_open(client, shib_peer)
        answer = choose_this_device(client, chooser, idp.base_url)
        refused = post_saml_form(other, answer, shib_peer.acs_url)
        assert refused.status_code == 500
        assert "Response correlation failed" in refused.text, refused.text[:3000]
        assert "SE2120001355-E0001" not in refused.text
        # The same Response in the browser that asked for it: a valid login.
        session = post_saml_form(client, answer, shib_peer.acs_url)
        assert session_page_values(session.text)["employeeHsaId"] == "SE2120001355-E0001"


def test_shib_unspecified_name_id_gets_the_profile_default(
    idp: IdpUnderTest, shib_peer: ShibbolethPeer
):
    unspecified = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
    with browser(idp.ca_file, idp.card("anna")) as client:
        values = session_page_values(
            shib_card_login(client, shib_peer, idp, NameIDFormat=unspecified).text
        )
    # The eID profile's default: pairwise persistent.
    assert values["persistent-id"].startswith(f"{idp.base_url}/saml/metadata!"), values
    assert "transient-id" not in values


@pytest.mark.parametrize(
    "params",
    [
        {"NameIDFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"},
        {"NameIDFormat": PERSISTENT, "SPNameQualifier": "https://other-sp.example.test/sp"},
    ],
    ids=["emailAddress", "other-SPNameQualifier"],
)
def test_shib_unsupported_name_id_policy_comes_back_as_error(
    idp: IdpUnderTest, shib_peer: ShibbolethPeer, params: dict[str, str]
):
    with browser(idp.ca_file, idp.card("anna")) as client:
        answer, request = shib_open_seen(client, shib_peer, **params)
        assert all(value in request for value in params.values()), request
        # Answered at once, before any card: an auto-posting form to the SP's ACS.
        sp_page = post_saml_form(client, answer, shib_peer.acs_url)
    assert shib_error(sp_page) == {
        "status": "urn:oasis:names:tc:SAML:2.0:status:Requester",
        "sub_status": "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy",
    }


def test_shib_metadata_filter_refuses_tampered_idp_metadata(
    idp: IdpUnderTest, shib_peer: ShibbolethPeer
):
    """The peer trusts the IdP's metadata because its Signature filter checked it: Shibboleth's
    own mdquery, on the peer's configuration, finds the IdP in a copy of the genuine metadata
    and nothing in a tampered copy."""
    idp_entity_id = f"{idp.base_url}/saml/metadata"
    genuine_xml = idp.idp_metadata_file.read_text(encoding="utf-8")
    genuine = shib_peer.directory / "genuine-idp-metadata.xml"
    genuine.write_text(genuine_xml, encoding="utf-8")
    tampered = shib_peer.directory / "tampered-idp-metadata.xml"
    tampered.write_text(genuine_xml.replace("/saml/sso/post", "/saml/sso/evil"), encoding="utf-8")
    found = shib_peer.mdquery(idp_entity_id, genuine)
    assert found.returncode == 0 and "IDPSSODescriptor" in found.stdout, found
    refused = shib_peer.mdquery(idp_entity_id, tampered)
    assert "IDPSSODescriptor" not in refused.stdout, refused

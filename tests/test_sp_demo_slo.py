"""Single Logout between mock Treserva and the IdP, both directions, over real sockets.

Mock Treserva runs as ``sp-demo serve``; the IdP is the session's. After a logout the IdP must
ask for the card again: a new login lands on the IdP's chooser, not on an SSO answer.
"""

from __future__ import annotations

import base64
import re
import urllib.parse

import httpx
from saml2 import BINDING_HTTP_POST
from saml2.saml import NAMEID_FORMAT_TRANSIENT, NameID

from sp_demo.config import Settings
from sp_demo.idp_metadata import load_idp_metadata
from sp_demo.saml import DIGEST_SHA256, SIG_RSA_SHA256, build_client, idp_entity_id
from tests.conftest import IdpUnderTest
from tests.helpers.flows import posted_form, started_login
from tests.helpers.support import browser, parse_page, reason_code
from tests.helpers.treserva import Treserva, log_in_with_card


def logged_in_anna(idp: IdpUnderTest, treserva: Treserva, client: httpx.Client) -> None:
    page = log_in_with_card(client, treserva)
    assert page.status_code == 200, page.text
    assert '<code id="hsa-id">SE2120001355-E0001</code>' in page.text


def asks_for_the_card(client: httpx.Client, treserva: Treserva) -> bool:
    """Start a login at Treserva: True if the IdP shows its chooser (no SSO session left)."""
    started = client.get(f"{treserva.base_url}/login")
    at_idp = client.get(started.headers["location"])
    if started_login(at_idp):
        return True
    assert at_idp.status_code == 200 and 'id="saml-post"' in at_idp.text, at_idp.text
    return False


def test_idp_metadata_advertises_single_logout(idp: IdpUnderTest, treserva: Treserva) -> None:
    with browser(idp.ca_file) as client:
        metadata = client.get(f"{idp.base_url}/saml/metadata").text
    for binding, path in (("HTTP-Redirect", "redirect"), ("HTTP-POST", "post")):
        assert re.search(
            rf'SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:{binding}" '
            rf'Location="{re.escape(idp.base_url)}/saml/slo/{path}"',
            metadata,
        ), metadata


def test_logout_at_treserva_logs_out_of_the_idp(idp: IdpUnderTest, treserva: Treserva) -> None:
    with browser(idp.ca_file, idp.card("anna")) as client:
        logged_in_anna(idp, treserva, client)
        assert not asks_for_the_card(client, treserva)  # SSO: the IdP remembers Anna

        started = client.get(f"{treserva.base_url}/logout")
        assert started.status_code == 303
        to_idp = started.headers["location"]
        assert to_idp.startswith(f"{idp.base_url}/saml/slo/redirect?SAMLRequest=")
        assert "Signature=" in to_idp and "SigAlg=" in to_idp
        at_idp = client.get(to_idp)
        assert at_idp.status_code == 303, at_idp.text
        back = at_idp.headers["location"]
        assert back.startswith(f"{treserva.base_url}/saml/slo/redirect?SAMLResponse=")
        assert "Signature=" in back
        logged_out = client.get(back)
        assert logged_out.status_code == 200, logged_out.text
        assert 'id="idp-logged-out"' in logged_out.text

        assert client.get(f"{treserva.base_url}/me").headers["location"] == "/"
        assert asks_for_the_card(client, treserva)


def test_logout_at_the_idp_logs_out_of_treserva(idp: IdpUnderTest, treserva: Treserva) -> None:
    with browser(idp.ca_file, idp.card("anna")) as client:
        logged_in_anna(idp, treserva, client)
        # A second SP in the same session, one without Single Logout in its metadata.
        location, _request_id = idp.sp.login_url()
        sso = client.get(location)
        assert sso.status_code == 200 and 'id="saml-post"' in sso.text

        confirm = client.get(f"{idp.base_url}/saml/logout")
        assert confirm.status_code == 200
        assert "Treserva (demo)" in confirm.text
        form = parse_page(confirm.text).forms[0]
        # A post without the confirmation form's token (a cross-site post) only asks again.
        forged = client.post(f"{idp.base_url}{form['action']}", data={"csrf": "x" * 64})
        assert forged.status_code == 303 and forged.headers["location"] == "/saml/logout"
        started = client.post(f"{idp.base_url}{form['action']}", data=form["fields"])
        assert started.status_code == 303, started.text
        to_treserva = started.headers["location"]
        assert to_treserva.startswith(f"{treserva.base_url}/saml/slo/redirect?SAMLRequest=")
        answered = client.get(to_treserva)
        assert answered.status_code == 303, answered.text
        back = answered.headers["location"]
        assert back.startswith(f"{idp.base_url}/saml/slo/redirect?SAMLResponse=")
        done = client.get(back)
        assert done.status_code == 200, done.text
        assert 'id="logged-out"' in done.text
        logged_out = done.text.split('id="logged-out-services"')[1].split("</ul>")[0]
        assert "Treserva (demo)" in logged_out
        not_confirmed = done.text.split('id="not-logged-out-services"')[1].split("</ul>")[0]
        assert "sp.example.test" in not_confirmed

        assert client.get(f"{treserva.base_url}/me").headers["location"] == "/"
        assert asks_for_the_card(client, treserva)


def idp_logout_request_to_treserva(idp: IdpUnderTest, client: httpx.Client) -> str:
    """Log out at the IdP; the URL of the signed LogoutRequest it sends Treserva (by Redirect)."""
    confirm = client.get(f"{idp.base_url}/saml/logout")
    form = parse_page(confirm.text).forms[0]
    started = client.post(f"{idp.base_url}{form['action']}", data=form["fields"])
    assert started.status_code == 303, started.text
    return started.headers["location"]


def test_treserva_refuses_an_idp_logout_request_it_cannot_verify(
    idp: IdpUnderTest, treserva: Treserva
) -> None:
    """Treserva checks the IdP with its own reader: the Redirect signature over the query as
    received is required, and a parameter twice is refused, before any session ends."""
    with browser(idp.ca_file, idp.card("anna")) as client:
        logged_in_anna(idp, treserva, client)
        to_treserva = idp_logout_request_to_treserva(idp, client)
        base, _, query = to_treserva.partition("?")
        parts = dict(part.split("=", 1) for part in query.split("&"))
        signature = parts["Signature"]
        changed = "A" if signature[10] != "A" else "B"
        refused_queries = {
            "unsigned": "&".join(f"{k}={v}" for k, v in parts.items() if k == "SAMLRequest"),
            "signature without SigAlg": "&".join(
                f"{k}={v}" for k, v in parts.items() if k != "SigAlg"
            ),
            "tampered": query.replace(signature, signature[:10] + changed + signature[11:]),
            "request twice": f"{query}&SAMLRequest={parts['SAMLRequest']}",
            "encoded name": f"SAML%52equest={parts['SAMLRequest']}&{query}",
            "relay state changed": query.replace(
                f"RelayState={parts['RelayState']}", "RelayState=elsewhere"
            ),
        }
        for name, refused_query in refused_queries.items():
            refused = client.get(f"{base}?{refused_query}")
            assert refused.status_code == 400, name
            assert reason_code(refused.text) == "logout_invalid", name
            # Anna is still logged in to Treserva.
            assert client.get(f"{treserva.base_url}/me").status_code == 200, name

        answered = client.get(to_treserva)
        assert answered.status_code == 303, answered.text
        assert client.get(f"{treserva.base_url}/me").headers["location"] == "/"


def test_an_unsigned_or_tampered_logout_request_is_refused(
    idp: IdpUnderTest, treserva: Treserva
) -> None:
    with browser(idp.ca_file, idp.card("anna")) as client:
        logged_in_anna(idp, treserva, client)
        to_idp = client.get(f"{treserva.base_url}/logout").headers["location"]
        base, _, query = to_idp.partition("?")
        parts = dict(part.split("=", 1) for part in query.split("&"))

        unsigned = f"{base}?SAMLRequest={parts['SAMLRequest']}"
        refused = client.get(unsigned)
        assert refused.status_code == 400
        assert reason_code(refused.text) == "unsigned_request"

        signature = urllib.parse.unquote(parts["Signature"])
        forged = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
        tampered = to_idp.replace(parts["Signature"], urllib.parse.quote(forged, safe=""))
        refused = client.get(tampered)
        assert refused.status_code == 400
        assert reason_code(refused.text) == "bad_signature"

        # Nothing was ended: the IdP still knows Anna.
        assert not asks_for_the_card(client, treserva)


def test_a_logout_request_is_accepted_once(idp: IdpUnderTest, treserva: Treserva) -> None:
    with browser(idp.ca_file, idp.card("anna")) as client:
        logged_in_anna(idp, treserva, client)
        to_idp = client.get(f"{treserva.base_url}/logout").headers["location"]
        assert client.get(to_idp).status_code == 303
        replayed = client.get(to_idp)
        assert replayed.status_code == 400
        assert reason_code(replayed.text) == "replayed_request"


def test_a_logout_request_by_http_post_must_be_signed_and_gets_a_signed_answer(
    idp: IdpUnderTest, treserva: Treserva
) -> None:
    # Treserva's own key and entity, as an integrator's SP using the POST binding would send.
    settings = Settings(
        base_url=treserva.base_url,
        var_dir=treserva.work,
        sp_key=idp.pki.sp_signing_key,
        sp_cert=idp.pki.sp_signing_cert,
        idp_metadata_url=f"{idp.base_url}/saml/metadata",
        tls_ca_file=idp.pki.tls_ca_cert,
        idp_metadata_cert=idp.pki.idp_signing_cert,
    )
    sp = build_client(settings, load_idp_metadata(settings))
    destination = f"{idp.base_url}/saml/slo/post"

    def form(sign: bool) -> tuple[str, dict[str, str]]:
        request_id, request = sp.create_logout_request(
            destination,
            idp_entity_id(sp),
            name_id=NameID(text="_not-a-known-subject", format=NAMEID_FORMAT_TRANSIENT),
            sign=sign,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        encoded = base64.b64encode(str(request).encode("utf-8")).decode("ascii")
        return request_id, {"SAMLRequest": encoded, "RelayState": "post-state"}

    with browser(idp.ca_file, idp.card("anna")) as client:
        logged_in_anna(idp, treserva, client)
        _request_id, unsigned = form(sign=False)
        refused = client.post(destination, data=unsigned)
        assert refused.status_code == 400
        assert reason_code(refused.text) == "unsigned_request"
        assert not asks_for_the_card(client, treserva)

        request_id, signed = form(sign=True)
        answered = client.post(destination, data=signed)
        assert answered.status_code == 200, answered.text
        action, fields = posted_form(answered)
        # The answer goes to the SLO endpoint in Treserva's metadata, by the same binding.
        assert action == f"{treserva.base_url}/saml/slo/post"
        assert fields["RelayState"] == "post-state"
        parsed = sp.parse_logout_request_response(fields["SAMLResponse"], BINDING_HTTP_POST)
        assert parsed.response.in_response_to == request_id
        assert parsed.response.signature is not None
        # The browser's SSO session ended although the NameID named nobody the IdP knew.
        assert asks_for_the_card(client, treserva)

"""Issue 14 findings 1 and 6, over real sockets: the octets whose signature was checked are the
values used (a second, percent-encoded SAMLRequest or RelayState is refused at the IdP's SSO and
SLO and at mock Treserva's SLO), and xs:booleans in requests read as XML Schema says (``1``)."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
import zlib

import httpx
import pytest
from saml2 import BINDING_HTTP_REDIRECT

from idp.saml.bindings import (
    SAML_REQUEST,
    SAML_RESPONSE,
    BindingMessageRejected,
    read_redirect_query,
)
from idp.saml.xmlsec_backend import RSA_SHA256, SHA256
from tests.conftest import IdpUnderTest
from tests.helpers.flows import login_with_card, posted_form, started_login
from tests.helpers.refusals import assert_refused, audit_reasons
from tests.helpers.support import browser, parse_page, reason_code
from tests.helpers.treserva import Treserva
from tests.test_sp_demo_slo import asks_for_the_card, logged_in_anna


def _deflated(xml: str) -> str:
    return base64.b64encode(zlib.compress(xml.encode())[2:-4]).decode()


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _attacker_authn_request(idp: IdpUnderTest) -> str:
    """An unsigned AuthnRequest in the signing SP's name, as an attacker would write it."""
    return (
        '<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="_{uuid.uuid4().hex}" Version="2.0" IssueInstant="{_now()}" '
        f'Destination="{idp.base_url}/saml/sso/redirect" ForceAuthn="true">'
        f"<saml:Issuer>{idp.sp.entity_id}</saml:Issuer></samlp:AuthnRequest>"
    )


@pytest.mark.parametrize(
    "appended",
    [
        "SAML%52equest={attack}",
        "SAMLRequest={attack}",
        "Relay%53tate=https%3A%2F%2Fattacker.example.test%2F",
        "%53igAlg=x",
    ],
)
def test_a_second_message_appended_to_a_signed_query_is_refused(
    idp: IdpUnderTest, appended: str
) -> None:
    login_url, _ = idp.sp.login_url(relay_state="signed-state")
    extra = appended.format(attack=_deflated(_attacker_authn_request(idp)).replace("+", "%2B"))
    with browser(idp.ca_file) as client:
        page = client.get(f"{login_url}&{extra}")
    assert_refused(idp, page, "duplicate_parameter")


def test_a_percent_encoded_message_name_alone_is_refused(idp: IdpUnderTest) -> None:
    """Nobody signs ``SAML%52equest``: a lone encoded name is no way around the signature."""
    login_url, _ = idp.sp.login_url()
    encoded = login_url.replace("SAMLRequest=", "SAML%52equest=", 1)
    with browser(idp.ca_file) as client:
        assert_refused(idp, client.get(encoded), "duplicate_parameter")


def _attacker_logout_request(idp: IdpUnderTest, issuer: str, name_id: str) -> str:
    return (
        '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="_{uuid.uuid4().hex}" Version="2.0" IssueInstant="{_now()}" '
        f'Destination="{idp.base_url}/saml/slo/redirect">'
        f"<saml:Issuer>{issuer}</saml:Issuer><saml:NameID>{name_id}</saml:NameID>"
        "</samlp:LogoutRequest>"
    )


def test_idp_slo_refuses_a_second_logout_request(idp: IdpUnderTest, treserva: Treserva) -> None:
    with browser(idp.ca_file, idp.card("anna")) as client:
        logged_in_anna(idp, treserva, client)
        to_idp = client.get(f"{treserva.base_url}/logout").headers["location"]
        attack = _deflated(
            _attacker_logout_request(idp, f"{treserva.base_url}/saml/metadata", "someone-else")
        )
        refused = client.get(f"{to_idp}&SAML%52equest={attack.replace('+', '%2B')}")
        assert refused.status_code == 400
        assert reason_code(refused.text) == "duplicate_parameter"
        assert ("saml.logout", "rejected", "duplicate_parameter") in audit_reasons(idp)
        # Nothing was ended: the IdP still knows Anna.
        assert not asks_for_the_card(client, treserva)


def test_mock_treserva_refuses_a_second_message_from_the_idp(
    idp: IdpUnderTest, treserva: Treserva
) -> None:
    with browser(idp.ca_file, idp.card("anna")) as client:
        logged_in_anna(idp, treserva, client)
        confirm = client.get(f"{idp.base_url}/saml/logout")
        form = parse_page(confirm.text).forms[0]
        started = client.post(f"{idp.base_url}{form['action']}", data=form["fields"])
        to_treserva = started.headers["location"]
        assert "/saml/slo/redirect?SAMLRequest=" in to_treserva
        # An unsigned LogoutRequest in the IdP's name, for another person, appended.
        attack = _attacker_logout_request(idp, idp.sp.entity_id, "someone-else")
        attack = attack.replace(
            f"<saml:Issuer>{idp.sp.entity_id}", f"<saml:Issuer>{idp.base_url}/saml/metadata"
        )
        attack = attack.replace(
            f'Destination="{idp.base_url}/saml/slo/redirect"',
            f'Destination="{treserva.base_url}/saml/slo/redirect"',
        )
        encoded = _deflated(attack).replace("+", "%2B")
        refused = client.get(f"{to_treserva}&SAML%52equest={encoded}")
        assert refused.status_code >= 400
        assert 'id="error"' in refused.text or "logout_invalid" in refused.text
        # Treserva's session was not ended by the refused message.
        assert client.get(f"{treserva.base_url}/me").status_code == 200


def _login_url_with(idp: IdpUnderTest, **attributes: str) -> tuple[str, str]:
    request_id, info = idp.sp.client.prepare_for_authenticate(
        relay_state="bool-state",
        binding=BINDING_HTTP_REDIRECT,
        assertion_consumer_service_url=idp.sp.acs_url,
        sign=True,
        sigalg=RSA_SHA256,
        digest_alg=SHA256,
        **attributes,
    )
    return dict(info["headers"])["Location"], request_id


def _unsigned_request_with(idp: IdpUnderTest, attributes: str) -> str:
    """A redirect URL carrying an AuthnRequest with ``attributes`` written as given (pysaml2
    would write ``true``), from the SP that does not sign."""
    xml = (
        '<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="_{uuid.uuid4().hex}" Version="2.0" IssueInstant="{_now()}" '
        f'Destination="{idp.base_url}/saml/sso/redirect" {attributes}>'
        f"<saml:Issuer>{idp.unsigned_sp.entity_id}</saml:Issuer></samlp:AuthnRequest>"
    )
    return f"{idp.base_url}/saml/sso/redirect?" + str(
        httpx.QueryParams({"SAMLRequest": _deflated(xml)})
    )


def test_force_authn_written_as_1_asks_for_the_card_again(idp: IdpUnderTest) -> None:
    with browser(idp.ca_file, idp.card("anna")) as client:
        first, _ = idp.unsigned_sp.login_url(sign=False)
        assert 'id="saml-post"' in login_with_card(client, first, idp.base_url).text
        again = _unsigned_request_with(idp, 'ForceAuthn="1"')
        answer = client.get(again)
        assert started_login(answer), answer.text[:500]
        # Without ForceAuthn (or with "0") the SSO session answers at once.
        plain = _unsigned_request_with(idp, 'ForceAuthn="0"')
        assert 'id="saml-post"' in client.get(plain).text


def test_is_passive_written_as_1_gets_no_passive(idp: IdpUnderTest) -> None:
    location, request_id = _login_url_with(idp, is_passive="1")
    with browser(idp.ca_file) as client:
        answer = client.get(location)
    assert answer.status_code == 200, answer.text[:500]
    _action, fields = posted_form(answer)
    xml = base64.b64decode(fields["SAMLResponse"]).decode()
    assert "urn:oasis:names:tc:SAML:2.0:status:NoPassive" in xml
    assert f'InResponseTo="{request_id}"' in xml


@pytest.mark.parametrize("value", ["yes", "TRUE", "", "2"])
def test_a_boolean_outside_xml_schema_is_refused(idp: IdpUnderTest, value: str) -> None:
    xml = _attacker_authn_request(idp).replace('ForceAuthn="true"', f'ForceAuthn="{value}"')
    xml = xml.replace(idp.sp.entity_id, idp.unsigned_sp.entity_id)
    query = httpx.QueryParams({"SAMLRequest": _deflated(xml)})
    with browser(idp.ca_file) as client:
        page = client.get(f"{idp.base_url}/saml/sso/redirect?{query}")
    assert_refused(idp, page, "malformed_request")


# --- the reader itself ----------------------------------------------------------------------


def test_reader_keeps_the_octets_it_decodes() -> None:
    query = b"SAMLRequest=a%2Bb&RelayState=x+y&SigAlg=alg%3A1&Signature=c2ln"
    message = read_redirect_query(query)
    assert message.text == "a+b" and message.relay_state == "x y"
    assert message.query_signature is not None
    assert message.query_signature.signed_octets == (
        b"SAMLRequest=a%2Bb&RelayState=x+y&SigAlg=alg%3A1"
    )
    assert message.query_signature.algorithm == "alg:1"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        (b"SAMLRequest=a&SAMLRequest=b", "duplicate_parameter"),
        (b"SAMLRequest=a&SAML%52equest=b", "duplicate_parameter"),
        (b"SAML%52equest=b", "duplicate_parameter"),
        (b"SAMLRequest=a&RelayState=1&Relay%53tate=2", "duplicate_parameter"),
        (b"SAMLRequest=a&SigAlg=x", "bad_signature"),
        (b"SAMLRequest=a&Signature=x", "bad_signature"),
        (b"RelayState=a", "malformed_request"),
        (b"SAMLRequest=", "malformed_request"),
        (b"SAMLRequest=a&SAMLResponse=b", "malformed_request"),
        ("SAMLRequest=ä".encode(), "malformed_request"),
        (b"&".join(b"x%d=1" % i for i in range(20)) + b"&SAMLRequest=a", "malformed_request"),
    ],
)
def test_reader_refuses(query: bytes, reason: str) -> None:
    with pytest.raises(BindingMessageRejected) as refused:
        read_redirect_query(query, (SAML_REQUEST, SAML_RESPONSE))
    assert refused.value.reason == reason

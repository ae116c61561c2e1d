"""The IdP against SAML SPs nobody here wrote: OneLogin's python3-saml (strict) and pysaml2.

Both SPs know the IdP only from its published metadata, sign their HTTP-Redirect AuthnRequests,
and validate every Response with their own library. The python3-saml SP publishes an encryption
key and insists on an encrypted Assertion. The browser is the httpx stand-in presenting a test
card as its TLS client certificate to the IdP's card listener ("SITHS eID på denna enhet").
"""

from __future__ import annotations

import urllib.parse

import httpx
import pytest

from tests.conftest import IdpUnderTest
from tests.helpers.flows import follow, login_with_card, open_login
from tests.helpers.support import browser
from tests.interop.saml_peers import (
    AUTHN_FAILED,
    CANCEL,
    EID_LOA,
    EMAIL,
    INVALID_NAME_ID_POLICY,
    NO_AUTHN_CONTEXT,
    PASSWORD_PROTECTED_TRANSPORT,
    PERSISTENT,
    REQUESTER,
    RESPONDER,
    SAMBI_LOA,
    TRANSIENT,
    UNSPECIFIED,
    Pysaml2Peer,
    Python3SamlPeer,
    SamlOutcome,
    SamlPeer,
    SpRequest,
    back_to_service,
    fetch_idp_metadata,
    form_to_acs,
    form_with_text,
    saml_response_xml,
)

EMPLOYEE_HSA_ID = "http://sambi.se/attributes/1/employeeHsaId"
PYTHON3_SAML_ENTITY = "https://python3-saml.example.test/metadata"


@pytest.fixture(scope="module")
def py_saml_peers(idp: IdpUnderTest) -> dict[str, SamlPeer]:
    """python3-saml registered with the IdP by its generated metadata; the session's pysaml2 SP."""
    python3_saml = Python3SamlPeer(
        idp.work_dir / "python3-saml-sp",
        PYTHON3_SAML_ENTITY,
        fetch_idp_metadata(idp.base_url, idp.ca_file),
        idp.pki.idp_signing_cert,
    )
    (idp.sp_metadata_dir / "python3-saml.xml").write_text(
        python3_saml.metadata_xml, encoding="utf-8"
    )
    return {"python3-saml": python3_saml, "pysaml2": Pysaml2Peer(idp.sp)}


@pytest.fixture(params=["python3-saml", "pysaml2"])
def py_peer(request: pytest.FixtureRequest, py_saml_peers: dict[str, SamlPeer]) -> SamlPeer:
    return py_saml_peers[request.param]


def card_login(
    idp: IdpUnderTest, client: httpx.Client, peer: SamlPeer, request: SpRequest
) -> tuple[SamlOutcome, dict[str, str], str]:
    """A login with the browser's card on the chooser; the peer's reading of the answer."""
    url, request_id = peer.login_url(request)
    final = login_with_card(client, url, idp.base_url)
    fields = form_to_acs(final, peer.acs_url)
    return peer.consume(fields, request_id), fields, request_id


def sso_login(
    idp: IdpUnderTest, client: httpx.Client, peer: SamlPeer, request: SpRequest
) -> SamlOutcome:
    """A login answered from the browser's SSO session (no chooser, no card)."""
    url, request_id = peer.login_url(request)
    answer = open_login(client, url, idp.base_url)
    return peer.consume(form_to_acs(answer, peer.acs_url), request_id)


def immediate_answer(idp: IdpUnderTest, peer: SamlPeer, request: SpRequest) -> SamlOutcome:
    """A request the IdP answers at once with a Response to the ACS, before any chooser."""
    url, request_id = peer.login_url(request)
    with browser(idp.ca_file) as client:
        answer = open_login(client, url, idp.base_url)
    outcome = peer.consume(form_to_acs(answer, peer.acs_url), request_id)
    assert outcome.in_response_to in (None, request_id)
    return outcome


def test_login_through_this_device(idp: IdpUnderTest, py_peer: SamlPeer) -> None:
    with browser(idp.ca_file, idp.card("anna")) as client:
        outcome, fields, request_id = card_login(
            idp, client, py_peer, SpRequest(relay_state="rs-interop")
        )
    assert outcome.success, outcome.error
    assert fields["RelayState"] == "rs-interop"
    assert outcome.in_response_to == request_id
    assert outcome.attributes[EMPLOYEE_HSA_ID] == ["SE2120001355-E0001"]
    # No RequestedAuthnContext: the SP's profile's loa3 (Sambi, by the attributes it asks for).
    assert outcome.authn_context == SAMBI_LOA.format(3)
    assert outcome.name_id and outcome.name_id_format == TRANSIENT


def test_python3_saml_gets_an_encrypted_assertion(
    idp: IdpUnderTest, py_saml_peers: dict[str, SamlPeer]
) -> None:
    peer = py_saml_peers["python3-saml"]
    with browser(idp.ca_file, idp.card("bertil")) as client:
        outcome, fields, _ = card_login(idp, client, peer, SpRequest())
    # python3-saml (wantAssertionsEncrypted) refuses a plain Assertion; the algorithms are the
    # ones the Swedish eID Framework allows.
    assert outcome.success, outcome.error
    assert outcome.attributes[EMPLOYEE_HSA_ID] == ["SE2120001355-E0002"]
    xml = saml_response_xml(fields)
    assert "EncryptedAssertion" in xml and "SE2120001355-E0002" not in xml
    assert "http://www.w3.org/2009/xmlenc11#aes256-gcm" in xml or (
        "http://www.w3.org/2009/xmlenc11#aes128-gcm" in xml
    )
    assert "rsa-oaep" in xml
    assert "rsa-1_5" not in xml and "tripledes" not in xml


def test_cancel_on_the_chooser_comes_back_as_an_error(idp: IdpUnderTest, py_peer: SamlPeer) -> None:
    url, request_id = py_peer.login_url(SpRequest(relay_state="rs-cancel"))
    with browser(idp.ca_file, idp.card("anna")) as client:
        chooser = open_login(client, url, idp.base_url)
        cancel = form_with_text(chooser, "Avbryt")
        assert cancel.method == "post"
        target = urllib.parse.urljoin(str(chooser.url), cancel.action)
        page = follow(client, client.post(target, data=cancel.fields), idp.base_url)
    fields = back_to_service(page, py_peer.acs_url)
    assert fields.get("RelayState") == "rs-cancel"
    outcome = py_peer.consume(fields, request_id)
    assert not outcome.success
    assert outcome.status == [RESPONDER, CANCEL], outcome.error
    assert outcome.in_response_to in (None, request_id)


@pytest.mark.parametrize("card", ["expired", "other_org"])
def test_refused_card_comes_back_as_authn_failed(
    idp: IdpUnderTest, py_peer: SamlPeer, card: str
) -> None:
    url, request_id = py_peer.login_url(SpRequest())
    with browser(idp.ca_file, idp.card(card)) as client:
        page = login_with_card(client, url, idp.base_url)
    outcome = py_peer.consume(back_to_service(page, py_peer.acs_url), request_id)
    assert not outcome.success
    assert outcome.status == [RESPONDER, AUTHN_FAILED], outcome.error
    assert outcome.in_response_to in (None, request_id)


@pytest.mark.parametrize(
    ("loa", "comparison", "answered"),
    [
        ((SAMBI_LOA.format(3),), "exact", SAMBI_LOA.format(3)),
        ((EID_LOA.format(3),), "exact", EID_LOA.format(3)),
        ((SAMBI_LOA.format(2),), "minimum", SAMBI_LOA.format(3)),
        ((EID_LOA.format(2),), "minimum", EID_LOA.format(3)),
        ((EID_LOA.format(3),), "maximum", EID_LOA.format(3)),
    ],
    ids=["exact-sambi3", "exact-eid3", "minimum-sambi2", "minimum-eid2", "maximum-eid3"],
)
def test_requested_loa_that_is_met(
    idp: IdpUnderTest, py_peer: SamlPeer, loa: tuple[str, ...], comparison: str, answered: str
) -> None:
    with browser(idp.ca_file, idp.card("anna")) as client:
        outcome, _, _ = card_login(idp, client, py_peer, SpRequest(loa, comparison))
    assert outcome.success, outcome.error
    assert outcome.authn_context == answered


@pytest.mark.parametrize(
    ("loa", "comparison"),
    [
        ((SAMBI_LOA.format(4),), "minimum"),
        ((EID_LOA.format(4),), "exact"),
        ((SAMBI_LOA.format(3),), "better"),
        # python3-saml's default request, which this IdP cannot honour.
        ((PASSWORD_PROTECTED_TRANSPORT,), "exact"),
    ],
    ids=["minimum-sambi4", "exact-eid4", "better-sambi3", "exact-password"],
)
def test_requested_loa_that_is_not_met(
    idp: IdpUnderTest, py_peer: SamlPeer, loa: tuple[str, ...], comparison: str
) -> None:
    outcome = immediate_answer(idp, py_peer, SpRequest(loa, comparison))
    assert not outcome.success
    assert outcome.status == [RESPONDER, NO_AUTHN_CONTEXT], outcome.error


def test_transient_name_id_is_new_each_login(idp: IdpUnderTest, py_peer: SamlPeer) -> None:
    with browser(idp.ca_file, idp.card("anna")) as client:
        first, _, _ = card_login(idp, client, py_peer, SpRequest(name_id_format=TRANSIENT))
        second = sso_login(idp, client, py_peer, SpRequest(name_id_format=TRANSIENT))
    assert first.success and second.success, (first.error, second.error)
    assert first.name_id_format == second.name_id_format == TRANSIENT
    assert first.name_id and second.name_id and first.name_id != second.name_id


def test_persistent_name_id_is_a_stable_pseudonym(idp: IdpUnderTest, py_peer: SamlPeer) -> None:
    with browser(idp.ca_file, idp.card("anna")) as client:
        first, _, _ = card_login(idp, client, py_peer, SpRequest(name_id_format=PERSISTENT))
        second = sso_login(idp, client, py_peer, SpRequest(name_id_format=PERSISTENT))
    with browser(idp.ca_file, idp.card("anna")) as other_browser:
        third, _, _ = card_login(idp, other_browser, py_peer, SpRequest(name_id_format=PERSISTENT))
    assert first.success and second.success and third.success, (
        first.error,
        second.error,
        third.error,
    )
    assert first.name_id_format == PERSISTENT
    assert first.name_id == second.name_id == third.name_id
    assert first.name_id and "SE2120001355" not in first.name_id


def test_persistent_name_id_differs_between_the_peers(
    idp: IdpUnderTest, py_saml_peers: dict[str, SamlPeer]
) -> None:
    persistent = SpRequest(name_id_format=PERSISTENT)
    with browser(idp.ca_file, idp.card("anna")) as client:
        first, _, _ = card_login(idp, client, py_saml_peers["python3-saml"], persistent)
        second = sso_login(idp, client, py_saml_peers["pysaml2"], persistent)
    assert first.success and second.success, (first.error, second.error)
    assert first.name_id_format == second.name_id_format == PERSISTENT
    assert first.name_id != second.name_id


def test_unspecified_name_id_gets_the_profile_default(idp: IdpUnderTest, py_peer: SamlPeer) -> None:
    with browser(idp.ca_file, idp.card("anna")) as client:
        outcome, _, _ = card_login(idp, client, py_peer, SpRequest(name_id_format=UNSPECIFIED))
    assert outcome.success, outcome.error
    assert outcome.name_id_format == TRANSIENT  # the Sambi profile's default


def test_unsupported_name_id_format_is_invalid_name_id_policy(
    idp: IdpUnderTest, py_peer: SamlPeer
) -> None:
    outcome = immediate_answer(idp, py_peer, SpRequest(name_id_format=EMAIL))
    assert not outcome.success
    assert outcome.status == [REQUESTER, INVALID_NAME_ID_POLICY], outcome.error


def test_foreign_sp_name_qualifier_is_invalid_name_id_policy(
    idp: IdpUnderTest, py_saml_peers: dict[str, SamlPeer]
) -> None:
    # Asking for another SP's pseudonym (SAML Core 3.4.1.1): only pysaml2 can send the attribute.
    request = SpRequest(
        name_id_format=PERSISTENT, sp_name_qualifier="https://eid-sp.example.test/metadata"
    )
    outcome = immediate_answer(idp, py_saml_peers["pysaml2"], request)
    assert not outcome.success
    assert outcome.status == [REQUESTER, INVALID_NAME_ID_POLICY], outcome.error

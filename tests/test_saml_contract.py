"""Issue 15 items 1–3 over real sockets: the SP gets exactly the LoA and NameID it asked for or a
standard status it can parse, and a login that ends without success goes back to the SP as a
signed error Response, from a page that says what happened. The SPs are pysaml2 clients
configured only from the IdP's published metadata."""

from __future__ import annotations

import base64
import sqlite3

import httpx
import pytest
from defusedxml import ElementTree
from saml2 import BINDING_HTTP_REDIRECT, samlp
from saml2.response import StatusError
from saml2.saml import (
    NAMEID_FORMAT_EMAILADDRESS,
    NAMEID_FORMAT_PERSISTENT,
    NAMEID_FORMAT_TRANSIENT,
    NAMEID_FORMAT_UNSPECIFIED,
    AuthnContextClassRef,
)
from saml2.samlp import NameIDPolicy, RequestedAuthnContext

from idp.saml.xmlsec_backend import RSA_SHA256, SHA256
from tests.conftest import IdpUnderTest
from tests.helpers import saml_sp
from tests.helpers.flows import choose_this_device, login_with_card, open_login
from tests.helpers.support import browser, parse_page, reason_code, tls_context

SAMBI = "http://id.sambi.se/loa/loa"
EID = "http://id.elegnamnden.se/loa/1.0/loa"
PPT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
REQUESTER = "urn:oasis:names:tc:SAML:2.0:status:Requester"
EID_CANCEL = "http://id.elegnamnden.se/status/1.0/cancel"


def login_url(
    sp: saml_sp.TestServiceProvider,
    *,
    loa: list[str] | None = None,
    comparison: str = "exact",
    name_id_format: str | None = None,
    sp_name_qualifier: str | None = None,
) -> tuple[str, str]:
    extra: dict = {}
    if loa is not None:
        extra["requested_authn_context"] = RequestedAuthnContext(
            authn_context_class_ref=[AuthnContextClassRef(text=uri) for uri in loa],
            comparison=comparison,
        )
    if name_id_format is not None or sp_name_qualifier is not None:
        extra["name_id_policy"] = NameIDPolicy(
            format=name_id_format, allow_create="1", sp_name_qualifier=sp_name_qualifier
        )
    request_id, info = sp.client.prepare_for_authenticate(
        relay_state="contract",
        binding=BINDING_HTTP_REDIRECT,
        assertion_consumer_service_url=sp.acs_url,
        sign=True,
        sigalg=RSA_SHA256,
        digest_alg=SHA256,
        **extra,
    )
    return dict(info["headers"])["Location"], request_id


def saml_form(page: httpx.Response, form_id: str | None = None) -> tuple[str, dict[str, str]]:
    forms = parse_page(page.text).forms
    chosen = [form for form in forms if "SAMLResponse" in form["fields"]]
    assert len(chosen) == 1, page.text[:2000]
    return chosen[0]["action"], chosen[0]["fields"]


def statuses(saml_response: str) -> tuple[str, str]:
    response = samlp.response_from_string(base64.b64decode(saml_response).decode())
    top = response.status.status_code
    return top.value, top.status_code.value if top.status_code else ""


def card_login(idp: IdpUnderTest, sp: saml_sp.TestServiceProvider, url: str, card: str = "anna"):
    with browser(idp.ca_file, idp.card(card)) as client:
        return login_with_card(client, url, idp.base_url)


# --- RequestedAuthnContext -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "comparison", "asserted"),
    [
        ([f"{SAMBI}3"], "exact", f"{SAMBI}3"),
        ([f"{EID}3"], "exact", f"{EID}3"),
        ([f"{SAMBI}2"], "minimum", f"{SAMBI}3"),
        ([f"{EID}1"], "better", f"{EID}3"),
        ([f"{SAMBI}4"], "maximum", f"{SAMBI}3"),
        ([f"{SAMBI}4", f"{EID}3"], "exact", f"{EID}3"),
    ],
)
def test_requested_loa_that_is_met_is_asserted(
    idp: IdpUnderTest, requested: list[str], comparison: str, asserted: str
) -> None:
    url, request_id = login_url(idp.sp, loa=requested, comparison=comparison)
    action, fields = saml_form(card_login(idp, idp.sp, url))
    assert action == idp.sp.acs_url
    parsed = idp.sp.parse(fields["SAMLResponse"], request_id)
    assert parsed.authn_info()[0][0] == asserted


@pytest.mark.parametrize(
    ("requested", "comparison"),
    [
        ([f"{EID}4"], "exact"),
        ([f"{SAMBI}4"], "minimum"),
        ([f"{SAMBI}3"], "better"),
        ([f"{EID}2"], "maximum"),
        ([PPT], "exact"),
        ([PPT], "minimum"),
    ],
)
def test_requested_loa_that_is_not_met_gets_no_authn_context(
    idp: IdpUnderTest, requested: list[str], comparison: str
) -> None:
    url, request_id = login_url(idp.sp, loa=requested, comparison=comparison)
    with browser(idp.ca_file) as client:
        answer = client.get(url)  # answered at once: no chooser, no card
    action, fields = saml_form(answer)
    assert action == idp.sp.acs_url and fields["RelayState"] == "contract"
    assert statuses(fields["SAMLResponse"]) == (RESPONDER, samlp.STATUS_NO_AUTHN_CONTEXT)
    with pytest.raises(StatusError):
        idp.sp.parse(fields["SAMLResponse"], request_id)  # signed, parsed, a status error


def test_published_assurance_matches_what_is_asserted(idp: IdpUnderTest) -> None:
    metadata = httpx.get(f"{idp.base_url}/saml/metadata", verify=tls_context(idp.ca_file)).text
    assert f"{SAMBI}3</" in metadata and f"{EID}3</" in metadata
    assert f"{SAMBI}4</" not in metadata and f"{EID}4</" not in metadata


# --- NameIDPolicy ----------------------------------------------------------------------------


def name_id_of(idp: IdpUnderTest, sp: saml_sp.TestServiceProvider, name_id_format: str | None):
    url, request_id = login_url(sp, name_id_format=name_id_format)
    _action, fields = saml_form(card_login(idp, sp, url))
    return sp.parse(fields["SAMLResponse"], request_id).assertion.subject.name_id


def test_name_id_formats_asked_for_are_given(idp: IdpUnderTest) -> None:
    # The Sambi SP's default is transient; it may ask for a pairwise persistent identifier.
    assert name_id_of(idp, idp.sp, None).format == NAMEID_FORMAT_TRANSIENT
    assert name_id_of(idp, idp.sp, NAMEID_FORMAT_UNSPECIFIED).format == NAMEID_FORMAT_TRANSIENT
    first = name_id_of(idp, idp.sp, NAMEID_FORMAT_PERSISTENT)
    again = name_id_of(idp, idp.sp, NAMEID_FORMAT_PERSISTENT)
    assert first.format == NAMEID_FORMAT_PERSISTENT and first.text == again.text
    assert first.sp_name_qualifier == idp.sp.entity_id
    # The eID SP's default is persistent; it may ask for transient.
    eid = name_id_of(idp, idp.eid_sp, None)
    assert eid.format == NAMEID_FORMAT_PERSISTENT and eid.text != first.text  # pairwise
    transient = name_id_of(idp, idp.eid_sp, NAMEID_FORMAT_TRANSIENT)
    assert transient.format == NAMEID_FORMAT_TRANSIENT and transient.text != eid.text


@pytest.mark.parametrize(
    ("name_id_format", "qualifier"),
    [
        (NAMEID_FORMAT_EMAILADDRESS, None),
        ("urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName", None),
        (NAMEID_FORMAT_PERSISTENT, "https://affiliation.example.test"),
    ],
)
def test_unsupported_name_id_policy_gets_invalid_name_id_policy(
    idp: IdpUnderTest, name_id_format: str, qualifier: str | None
) -> None:
    url, request_id = login_url(idp.sp, name_id_format=name_id_format, sp_name_qualifier=qualifier)
    with browser(idp.ca_file) as client:
        action, fields = saml_form(client.get(url))
    assert action == idp.sp.acs_url
    assert statuses(fields["SAMLResponse"]) == (REQUESTER, samlp.STATUS_INVALID_NAMEID_POLICY)
    with pytest.raises(StatusError):
        idp.sp.parse(fields["SAMLResponse"], request_id)


# --- failures go back to the SP ---------------------------------------------------------------


def assert_back_to_sp(
    idp: IdpUnderTest, page: httpx.Response, reason: str, request_id: str, second: str
) -> None:
    assert reason_code(page.text) == reason, page.text[:2000]
    assert 'lang="sv"' in page.text and "Tillbaka till tjänsten" in page.text
    action, fields = saml_form(page)
    assert action == idp.sp.acs_url  # from metadata
    assert fields["RelayState"] == "contract"
    assert statuses(fields["SAMLResponse"]) == (RESPONDER, second)
    with pytest.raises(StatusError):
        idp.sp.parse(fields["SAMLResponse"], request_id)


def test_cancel_on_the_chooser_goes_back_as_cancel(idp: IdpUnderTest) -> None:
    url, request_id = login_url(idp.sp)
    with browser(idp.ca_file) as client:
        chooser = open_login(client, url, idp.base_url)
        ref = parse_page(chooser.text).forms[0]["fields"]["ref"]
        cancelled = client.post(f"{idp.base_url}/login/cancel", data={"ref": ref})
        assert cancelled.status_code == 200
        assert_back_to_sp(idp, cancelled, "user_cancelled", request_id, EID_CANCEL)
        # The login cannot go on, and a second cancel offers nothing more to the SP.
        again = client.post(f"{idp.base_url}/login/cancel", data={"ref": ref})
        assert reason_code(again.text) == "login_cancelled" and "SAMLResponse" not in again.text
        assert client.get(f"{idp.base_url}/login?ref={ref}").status_code == 409


def test_cancel_on_the_choice_of_service_id_goes_back_as_cancel(idp: IdpUnderTest) -> None:
    url, request_id = login_url(idp.sp)
    with browser(idp.ca_file, idp.card("erik")) as client:
        choice = login_with_card(client, url, idp.base_url)
        assert "Välj tjänste-id" in choice.text
        cancel = next(f for f in parse_page(choice.text).forms if f["action"] == "/login/cancel")
        cancelled = client.post(f"{idp.base_url}/login/cancel", data=cancel["fields"])
    assert_back_to_sp(idp, cancelled, "user_cancelled", request_id, EID_CANCEL)


@pytest.mark.parametrize(
    ("card", "reason"), [("expired", "certificate_expired"), ("doris", "unknown_person")]
)
def test_refused_card_goes_back_as_authn_failed(idp: IdpUnderTest, card: str, reason: str) -> None:
    url, request_id = login_url(idp.sp)
    page = card_login(idp, idp.sp, url, card)
    assert page.status_code == 403
    assert_back_to_sp(idp, page, reason, request_id, samlp.STATUS_AUTHN_FAILED)


def test_timed_out_login_goes_back_as_authn_failed(idp: IdpUnderTest) -> None:
    url, request_id = login_url(idp.sp)
    with browser(idp.ca_file, idp.card("anna")) as client:
        chooser = open_login(client, url, idp.base_url)
        ref = parse_page(chooser.text).forms[0]["fields"]["ref"]
        with sqlite3.connect(idp.database_file()) as connection:
            connection.execute(
                "UPDATE pending_logins SET expires_at = '2020-01-01 00:00:00.000000' WHERE id = ?",
                (ref,),
            )
        page = choose_this_device(client, chooser, idp.base_url)
    assert_back_to_sp(idp, page, "expired_login", request_id, samlp.STATUS_AUTHN_FAILED)


def test_another_browser_gets_no_way_back(idp: IdpUnderTest) -> None:
    url, _request_id = login_url(idp.sp)
    with browser(idp.ca_file) as client:
        chooser = open_login(client, url, idp.base_url)
        ref = parse_page(chooser.text).forms[0]["fields"]["ref"]
    with browser(idp.ca_file) as intruder:
        refused = intruder.post(f"{idp.base_url}/login/cancel", data={"ref": ref})
        assert reason_code(refused.text) == "other_browser"
        assert "SAMLResponse" not in refused.text


# --- what the IdP releases, published and warned about ---------------------------------------


def test_metadata_lists_the_attributes_the_idp_releases(idp: IdpUnderTest) -> None:
    xml = httpx.get(f"{idp.base_url}/saml/metadata", verify=tls_context(idp.ca_file)).text
    root = ElementTree.fromstring(xml.encode())
    descriptor = root.find("{urn:oasis:names:tc:SAML:2.0:metadata}IDPSSODescriptor")
    published = {
        attribute.get("Name"): attribute.get("FriendlyName")
        for attribute in descriptor.findall("{urn:oasis:names:tc:SAML:2.0:assertion}Attribute")
    }
    assert published["urn:oid:1.2.752.29.6.2.1"] == "employeeHsaId"
    assert published["http://sambi.se/attributes/1/employeeHsaId"] == "employeeHsaId"
    assert published["urn:oid:2.5.4.4"] == "sn"
    # Published attributes come last in the descriptor, as the metadata schema orders them.
    assert descriptor[-1].tag == "{urn:oasis:names:tc:SAML:2.0:assertion}Attribute"


def test_a_requested_attribute_that_is_never_released_is_warned_about(
    idp: IdpUnderTest, tmp_path
) -> None:
    # pysaml2's default attribute map names employeeHsaId urn:oid:1.2.752.29.4.1: nothing has it.
    sp = saml_sp.registered_service_provider(
        tmp_path / "wrong-names",
        "https://wrong-names.example.test/metadata",
        idp.idp_metadata_file,
        idp.sp_metadata_dir,
        attributes=("urn:oid:1.2.752.29.4.1", "http://sambi.se/attributes/1/givenName"),
    )
    url, request_id = login_url(sp)
    _action, fields = saml_form(card_login(idp, sp, url))
    parsed = sp.parse(fields["SAMLResponse"], request_id)
    assert "urn:oid:1.2.752.29.4.1" not in parsed.ava
    with sqlite3.connect(idp.database_file()) as connection:
        rows = connection.execute(
            "SELECT detail FROM audit_events WHERE event = 'saml.requested_attribute_not_released'"
        ).fetchall()
    assert any(
        "wrong-names.example.test" in detail and "urn:oid:1.2.752.29.4.1" in detail
        for (detail,) in rows
    ), rows
    assert "requested attribute not released" in idp.server.log()

"""The IdP's SAML Responses as built by idp/saml/response.py: content, signatures, refusals.

The Responses are checked field by field, against the SAML 2.0 schemas, and by pysaml2 acting
as the SP (signatures verified with the xmlsec1 program against the IdP's metadata). The last
test goes over real sockets: a directory entry that XML cannot carry ends in a clear page.
"""

from __future__ import annotations

import calendar
import copy
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree
from saml2 import samlp
from saml2.response import StatusNoPassive
from saml2.sigver import SignatureError
from saml2.xml.schema import validate as validate_with_saml_schemas

from idp.saml.response import BuiltResponse, ResponseContentError
from idp.saml.server import AuthnRequestInfo, SamlIdentityProvider
from idp.saml.statuses import NO_PASSIVE
from idp.saml.xmlsec_backend import shared_backend, sign_enveloped
from siths_testkit.pki import TestPki
from tests.conftest import IdpUnderTest
from tests.helpers.flows import login_with_card
from tests.helpers.saml_sp import TestServiceProvider as ServiceProvider
from tests.helpers.saml_sp import anna, in_process_idp
from tests.helpers.support import assert_no_success_response, browser, reason_code

NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}
SAMBI = "http://sambi.se/attributes/1/"
EID_ATTRIBUTES = ("urn:oid:1.2.752.29.6.2.1", "urn:oid:2.5.4.42", "urn:oid:2.5.4.4")
RESPONSE = "urn:oasis:names:tc:SAML:2.0:protocol:Response"
ASSERTION = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"
URI_FORMAT = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"


@dataclass
class Provider:
    idp: SamlIdentityProvider
    sambi_sp: ServiceProvider
    eid_sp: ServiceProvider


@pytest.fixture(scope="module")
def provider(test_pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> Provider:
    idp, sps = in_process_idp(
        tmp_path_factory.mktemp("responses"),
        test_pki.directory,
        {
            "https://sambi.example.test/sp": {},
            "https://eid.example.test/sp": {"attributes": EID_ATTRIBUTES},
        },
    )
    return Provider(idp, *sps.values())


def request_to(sp: ServiceProvider, request_id: str = "_request-1") -> AuthnRequestInfo:
    return AuthnRequestInfo(request_id, sp.entity_id, sp.acs_url, "", False, False)


def instant(text: str) -> int:
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def test_login_response_names_the_request_the_sp_and_the_person(provider: Provider) -> None:
    sp, login = provider.sambi_sp, anna()
    built = provider.idp.build_authn_response(request_to(sp, "_r-content"), login)
    root = etree.fromstring(built.xml)
    validate_with_saml_schemas(built.xml.decode("utf-8"))

    assert root.get("Destination") == sp.acs_url and root.get("InResponseTo") == "_r-content"
    assert root.findtext("saml:Issuer", namespaces=NS) == "https://idp.example.test/saml/metadata"
    status = root.find("samlp:Status/samlp:StatusCode", NS)
    assert status.get("Value") == "urn:oasis:names:tc:SAML:2.0:status:Success"
    (assertion,) = root.findall("saml:Assertion", NS)
    issued = instant(assertion.get("IssueInstant"))
    assert abs(issued - time.time()) < 5

    conditions = assertion.find("saml:Conditions", NS)
    assert instant(conditions.get("NotBefore")) == issued
    assert instant(conditions.get("NotOnOrAfter")) == issued + 300
    audiences = conditions.findall("saml:AudienceRestriction/saml:Audience", NS)
    assert [audience.text for audience in audiences] == [sp.entity_id]
    confirmation = assertion.find("saml:Subject/saml:SubjectConfirmation", NS)
    assert confirmation.get("Method") == "urn:oasis:names:tc:SAML:2.0:cm:bearer"
    data = confirmation.find("saml:SubjectConfirmationData", NS)
    assert data.get("Recipient") == sp.acs_url and data.get("InResponseTo") == "_r-content"
    assert instant(data.get("NotOnOrAfter")) == issued + 300

    statement = assertion.find("saml:AuthnStatement", NS)
    assert instant(statement.get("AuthnInstant")) == login.authn_instant
    context = statement.findtext("saml:AuthnContext/saml:AuthnContextClassRef", namespaces=NS)
    assert context == "http://id.sambi.se/loa/loa3"

    released = {
        attribute.get("Name"): (
            attribute.get("NameFormat"),
            attribute.get("FriendlyName"),
            [value.text for value in attribute.findall("saml:AttributeValue", NS)],
        )
        for attribute in assertion.findall("saml:AttributeStatement/saml:Attribute", NS)
    }
    assert released == {
        f"{SAMBI}employeeHsaId": (URI_FORMAT, "employeeHsaId", ["SE2120001355-E0001"]),
        f"{SAMBI}givenName": (URI_FORMAT, "givenName", ["Anna"]),
        f"{SAMBI}surname": (URI_FORMAT, "surname", ["Andersson"]),
    }

    # What Single Logout records is what the SP received.
    name_id = assertion.find("saml:Subject/saml:NameID", NS)
    assert built.subject is not None
    assert built.subject.name_id == name_id.text
    assert built.subject.name_id_format == name_id.get("Format")
    assert built.subject.sp_name_qualifier == name_id.get("SPNameQualifier") == sp.entity_id
    assert built.subject.session_index == statement.get("SessionIndex")


def test_both_signatures_are_enveloped_and_the_assertion_is_signed_first(
    provider: Provider, test_pki: TestPki
) -> None:
    built = provider.idp.build_authn_response(request_to(provider.sambi_sp), anna())
    root = etree.fromstring(built.xml)
    assertion = root.find("saml:Assertion", NS)
    for element in (root, assertion):
        # Right after Issuer, referring to the element's own ID.
        assert element[1].tag == f"{{{NS['ds']}}}Signature"
        reference = element[1].find("ds:SignedInfo/ds:Reference", NS)
        assert reference.get("URI") == f"#{element.get('ID')}"
    # Signed in the other order, the Response's digest would cover an empty Assertion
    # signature: the Response signature must verify over the finished one, as sent.
    backend = shared_backend("/usr/bin/xmlsec1")
    cert = str(test_pki.idp_signing_cert)
    assert backend.validate_signature(built.xml, cert, "pem", RESPONSE, root.get("ID"))
    assert backend.validate_signature(built.xml, cert, "pem", ASSERTION, assertion.get("ID"))


def test_the_sp_accepts_the_response_and_refuses_it_altered(provider: Provider) -> None:
    sp = provider.sambi_sp
    built = provider.idp.build_authn_response(request_to(sp, "_r-sp"), anna())
    parsed = sp.parse(built.encoded, "_r-sp")
    assert parsed.ava[f"{SAMBI}employeeHsaId"] == ["SE2120001355-E0001"]
    assert parsed.assertion.authn_statement[0].session_index == built.subject.session_index

    altered = BuiltResponse(built.xml.replace(b">Anna<", b">Agnes<"), None)
    assert altered.xml != built.xml
    with pytest.raises(SignatureError):
        sp.parse(altered.encoded, "_r-sp")


def test_every_response_has_fresh_ids_and_transient_names(provider: Provider) -> None:
    sp, login = provider.sambi_sp, anna()
    first, second = (provider.idp.build_authn_response(request_to(sp), login) for _ in range(2))
    ids = [
        [*etree.fromstring(built.xml).xpath("//@ID"), built.subject.session_index]
        for built in (first, second)
    ]
    assert len(set(ids[0]) | set(ids[1])) == 6
    assert first.subject.name_id != second.subject.name_id


def test_swedish_eid_sp_gets_a_stable_pairwise_pseudonym(provider: Provider) -> None:
    idp, eid_sp, sambi_sp = provider.idp, provider.eid_sp, provider.sambi_sp
    login = anna()
    first = idp.build_authn_response(request_to(eid_sp), login)
    again = idp.build_authn_response(request_to(eid_sp), login)
    other_person = idp.build_authn_response(request_to(eid_sp), anna("SE2120001355-E0002"))
    assert first.subject.name_id_format.endswith(":persistent")
    assert first.subject.name_id == again.subject.name_id
    assert first.subject.name_id != other_person.subject.name_id
    assert "SE2120001355" not in first.subject.name_id
    for_sambi = idp.build_authn_response(request_to(sambi_sp), login)
    assert not for_sambi.subject.name_id_format.endswith(":persistent")
    parsed = eid_sp.parse(first.encoded, "_request-1")
    assert parsed.ava["urn:oid:1.2.752.29.6.2.1"] == ["SE2120001355-E0001"]
    released = etree.fromstring(first.xml).xpath("//saml:Attribute/@Name", namespaces=NS)
    assert released == list(EID_ATTRIBUTES)  # what it asked for, in the profile's order


def test_status_response_carries_the_nested_status_and_no_assertion(provider: Provider) -> None:
    sp = provider.sambi_sp
    built = provider.idp.build_error_response(
        request_to(sp, "_r-passive"), NO_PASSIVE, "no session"
    )
    validate_with_saml_schemas(built.xml.decode("utf-8"))
    root = etree.fromstring(built.xml)
    assert built.subject is None and root.find("saml:Assertion", NS) is None
    top = root.find("samlp:Status/samlp:StatusCode", NS)
    assert top.get("Value") == "urn:oasis:names:tc:SAML:2.0:status:Responder"
    assert top.find("samlp:StatusCode", NS).get("Value") == samlp.STATUS_NO_PASSIVE
    assert root.findtext("samlp:Status/samlp:StatusMessage", namespaces=NS) == "no session"
    with pytest.raises(StatusNoPassive):
        sp.parse(built.encoded, "_r-passive")


@pytest.mark.parametrize("bad", ["Anna\x01", "Anna\x00", "Anna\ufffe"])
def test_a_value_xml_cannot_carry_is_refused(provider: Provider, bad: str) -> None:
    with pytest.raises(ResponseContentError):
        provider.idp.build_authn_response(request_to(provider.sambi_sp), anna(given_name=bad))


def test_signing_refuses_an_id_that_names_another_element(provider: Provider) -> None:
    """The signature may only ever point at the element being signed (signature wrapping)."""
    built = provider.idp.build_authn_response(request_to(provider.sambi_sp), anna())
    root = etree.fromstring(built.xml)
    assertion = root.find("saml:Assertion", NS)
    decoy = copy.deepcopy(assertion)
    root.append(decoy)  # two Assertions with the same ID
    signer = provider.idp._snapshot().signer
    with pytest.raises(SignatureError):
        sign_enveloped(assertion, signer.key)


# --- over real sockets -----------------------------------------------------------------------


@pytest.fixture
def anna_with_a_broken_name(idp: IdpUnderTest) -> Iterator[Path]:
    """Anna's directory entry with a control character in it, restored afterwards."""
    database = idp.database_file()
    with sqlite3.connect(database) as connection:
        connection.execute(
            "UPDATE directory_entries SET given_name = ? WHERE hsa_id = ?",
            ("An\x0bna", "SE2120001355-E0001"),
        )
    try:
        yield database
    finally:
        with sqlite3.connect(database) as connection:
            connection.execute(
                "UPDATE directory_entries SET given_name = 'Anna' WHERE hsa_id = ?",
                ("SE2120001355-E0001",),
            )


def unusable_entry_events(database: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(database) as connection:
        return connection.execute(
            "SELECT outcome, hsa_id, client_id FROM audit_events "
            "WHERE event = 'saml.response' AND reason = 'directory_entry_unusable' ORDER BY id"
        ).fetchall()


def participants_of_anna(database: Path, sp_entity_id: str) -> int:
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute(
            "SELECT count(*) FROM saml_session_participants WHERE hsa_id = ? AND sp_entity_id = ?",
            ("SE2120001355-E0001", sp_entity_id),
        ).fetchone()
    return int(count)


def test_a_directory_entry_xml_cannot_carry_ends_in_a_clear_page(
    idp: IdpUnderTest, anna_with_a_broken_name: Path
) -> None:
    login_url, _ = idp.sp.login_url()
    before = unusable_entry_events(anna_with_a_broken_name)
    participants = participants_of_anna(anna_with_a_broken_name, idp.sp.entity_id)
    with browser(idp.ca_file, idp.card("anna")) as client:
        page = login_with_card(client, login_url, idp.base_url)
    assert page.status_code == 500
    assert "Dina uppgifter kan inte skickas" in page.text
    assert "Your details cannot be sent" in page.text
    assert reason_code(page.text) == "directory_entry_unusable"
    assert_no_success_response(page.text)  # at most a failure status for the SP
    after = unusable_entry_events(anna_with_a_broken_name)
    assert after == [*before, ("failed", "SE2120001355-E0001", idp.sp.entity_id)]
    # Recorded with the login, the SP is forgotten again: no Response reached it, so Single
    # Logout has nothing to tell it.
    assert participants_of_anna(anna_with_a_broken_name, idp.sp.entity_id) == participants

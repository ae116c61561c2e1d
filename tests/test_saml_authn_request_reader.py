"""Reading an AuthnRequest (idp/saml/authn_request.py, through SamlIdentityProvider): one lxml
parse, schema-checked, its enveloped signature verified on that same tree with the SP's
metadata keys. In process: requests made by an independent pysaml2 SP (tests/helpers/saml_sp.py)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from lxml import etree
from saml2 import BINDING_HTTP_POST
from saml2.saml import NAMEID_FORMAT_ENTITY, Issuer

from idp.saml.bindings import SAML_REQUEST, BindingMessage
from idp.saml.server import SamlIdentityProvider, SamlRequestRejected
from siths_testkit.pki import TestPki
from tests.helpers.saml_sp import TestServiceProvider as ServiceProvider
from tests.helpers.saml_sp import in_process_idp, make_service_provider

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SIGNING_SP = "https://signing.example.test/sp"
PLAIN_SP = "https://plain.example.test/sp"
OUTSIDER_SP = "https://outsider.example.test/sp"
SSO_POST = "https://idp.example.test/saml/sso/post"


@dataclass
class Federation:
    idp: SamlIdentityProvider
    signing: ServiceProvider
    plain: ServiceProvider
    # Not in the IdP's metadata; its key is in no metadata the IdP trusts.
    outsider: ServiceProvider


@pytest.fixture(scope="module")
def federation(test_pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> Federation:
    work = tmp_path_factory.mktemp("authn-request-reader")
    idp, sps = in_process_idp(
        work, test_pki.directory, {SIGNING_SP: {}, PLAIN_SP: {"sign_requests": False}}
    )
    outsider = make_service_provider(
        work / "outsider", entity_id=OUTSIDER_SP, idp_metadata_file=work / "idp-metadata.xml"
    )
    return Federation(idp, sps[SIGNING_SP], sps[PLAIN_SP], outsider)


def request_xml(sp: ServiceProvider, *, sign: bool) -> bytes:
    _sso, fields, _request_id = sp.post_login_form(sign=sign)
    return base64.b64decode(fields["SAMLRequest"])


def receive(idp: SamlIdentityProvider, xml: bytes):
    message = BindingMessage(SAML_REQUEST, base64.b64encode(xml).decode(), "state")
    return idp.parse_authn_request(BINDING_HTTP_POST, message)


def changed(xml: bytes, change: Callable[[etree._Element], None]) -> bytes:
    root = etree.fromstring(xml)
    change(root)
    return etree.tostring(root)


def refusal(idp: SamlIdentityProvider, xml: bytes) -> SamlRequestRejected:
    with pytest.raises(SamlRequestRejected) as caught:
        receive(idp, xml)
    return caught.value


def test_a_signed_request_is_read_from_the_tree_whose_signature_was_verified(
    federation: Federation,
) -> None:
    info, sp = receive(federation.idp, request_xml(federation.signing, sign=True))
    assert sp.entity_id == SIGNING_SP and info.acs_url == federation.signing.acs_url


def test_an_unsigned_request_from_an_sp_that_does_not_sign_is_read(
    federation: Federation,
) -> None:
    info, _sp = receive(federation.idp, request_xml(federation.plain, sign=False))
    assert info.sp_entity_id == PLAIN_SP and info.request_id


def test_a_value_changed_after_signing_is_refused(federation: Federation) -> None:
    xml = request_xml(federation.signing, sign=True)
    tampered = changed(xml, lambda root: root.set("ForceAuthn", "true"))
    assert refusal(federation.idp, tampered).reason == "bad_signature"


def test_a_signature_by_a_key_not_in_the_senders_metadata_is_refused(
    federation: Federation,
) -> None:
    # The outsider signs a request that names the signing SP as its Issuer.
    outsider = federation.outsider.client
    issuer = Issuer(text=SIGNING_SP, format=NAMEID_FORMAT_ENTITY)
    request = outsider.create_authn_request(
        SSO_POST, binding=BINDING_HTTP_POST, sign=False, issuer=issuer
    )[1]
    signed = outsider.sign(request, sign_prepare=False)
    refused = refusal(federation.idp, str(signed).encode())
    assert refused.reason == "bad_signature" and "is invalid" in refused.detail, refused.detail


def _issuer(entity_id: str):
    from saml2.saml import Issuer

    return Issuer(text=entity_id, format="urn:oasis:names:tc:SAML:2.0:nameid-format:entity")


def test_a_signed_request_from_an_unknown_sp_is_refused_as_unknown(
    federation: Federation,
) -> None:
    xml = request_xml(federation.outsider, sign=True)
    assert refusal(federation.idp, xml).reason == "unknown_sp"


def test_a_request_that_breaks_the_schema_is_refused(federation: Federation) -> None:
    def add_unknown_child(root: etree._Element) -> None:
        etree.SubElement(root, f"{{{SAMLP}}}NotInTheSchema")

    unsigned = changed(request_xml(federation.plain, sign=False), add_unknown_child)
    refused = refusal(federation.idp, unsigned)
    assert refused.reason == "malformed_request"
    assert "not a valid AuthnRequest" in refused.detail
    # Signed, the same request was refused by pysaml2's signature check: so it is still.
    signed = changed(request_xml(federation.signing, sign=True), add_unknown_child)
    refused = refusal(federation.idp, signed)
    assert refused.reason == "bad_signature" and "not a valid AuthnRequest" in refused.detail


def test_a_request_without_its_required_attributes_is_refused(federation: Federation) -> None:
    xml = changed(request_xml(federation.plain, sign=False), lambda root: root.attrib.pop("ID"))
    assert refusal(federation.idp, xml).reason == "malformed_request"


def test_another_message_in_place_of_an_authn_request_is_refused(
    federation: Federation,
) -> None:
    logout = (
        f'<samlp:LogoutRequest xmlns:samlp="{SAMLP}" ID="_x" Version="2.0" '
        'IssueInstant="2026-01-01T00:00:00Z"/>'
    ).encode()
    refused = refusal(federation.idp, logout)
    assert refused.reason == "malformed_request" and "AuthnRequest" in refused.detail

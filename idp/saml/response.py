"""Signed SAML Responses, built as one XML tree and signed in place.

What a caller gets: a ``samlp:Response`` with its ``saml:Issuer``, ``ds:Signature`` and
``samlp:Status``; for a login also one ``saml:Assertion`` (Issuer, ``ds:Signature``, Subject with
a bearer SubjectConfirmation for the ACS and the request, Conditions with the SP as the only
audience, an AuthnStatement with a fresh SessionIndex, and the released attributes with
NameFormat ``uri``). The Assertion is signed first and the Response over it, both enveloped,
RSA-SHA256 over SHA-256 digests with exclusive canonicalisation, the IdP's certificate in
KeyInfo — the shape pysaml2's ``Server.create_authn_response`` produced, which SPs (and the
tests' pysaml2 SP) verify. For an SP with an encryption key the signed Assertion is replaced by
a ``saml:EncryptedAssertion`` (:mod:`idp.saml.encryption`) before the Response is signed.

Why not pysaml2's ``create_authn_response``: it builds the Response as pysaml2 objects,
serialises them with ElementTree, and hands the string to the crypto backend once per
signature, which parses and re-serialises it each time. That object layer and the round trips
cost more than the two RSA signatures themselves (``benchmarks/saml_signing.py``). Here lxml
builds the tree, :func:`idp.saml.xmlsec_backend.sign_enveloped` signs both elements on it with
the same checks the backend applies to pysaml2's documents, and the tree is serialised once.
Text from the directory is escaped by lxml; text that cannot be XML (control characters) is
refused with :class:`ResponseContentError`, never sent half-built.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from idp.attributes import AttributeProfile
from idp.authn import Authentication
from idp.saml.encryption import Recipient, encrypt_assertion
from idp.saml.xmlsec_backend import (
    DSIG_NS,
    ENVELOPED,
    EXC_C14N,
    RSA_SHA256,
    SHA256,
    LoadedKey,
    sign_enveloped,
)

SAMLP_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XS_NS = "http://www.w3.org/2001/XMLSchema"
NAMEID_FORMAT_ENTITY = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
NAME_FORMAT_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
CM_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
STATUS_RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
STATUS_REQUESTER = "urn:oasis:names:tc:SAML:2.0:status:Requester"
# The prefixes SAML documents conventionally use; the Response element declares them all once.
NSMAP = {"saml2p": SAMLP_NS, "saml2": SAML_NS, "ds": DSIG_NS, "xsi": XSI_NS}


class ResponseContentError(ValueError):
    """A value cannot be put into XML (e.g. a control character in a name from the directory)."""


@dataclass(frozen=True)
class ResponseSigner:
    """The IdP's signing key and the certificate published in KeyInfo."""

    key: LoadedKey
    certificate_base64: str

    @staticmethod
    def certificate_text(cert_file: Path) -> str:
        """The DER certificate in ``cert_file`` (PEM) as base64, as KeyInfo carries it."""
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
        return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


@dataclass(frozen=True)
class NameId:
    """The name an SP knows the user by, with the qualifiers that scope it."""

    value: str
    format: str
    name_qualifier: str
    sp_name_qualifier: str


@dataclass(frozen=True)
class Subject:
    """How an SP knows the user: the NameID it received and the assertion's SessionIndex."""

    name_id: str
    name_id_format: str
    name_qualifier: str
    sp_name_qualifier: str
    session_index: str


@dataclass(frozen=True)
class Attribute:
    """One released attribute: its URI name, its FriendlyName and its values."""

    name: str
    friendly_name: str
    values: tuple[str, ...]


def released_attributes(
    profile: AttributeProfile, names: Iterable[str], authentication: Authentication
) -> list[Attribute]:
    """The released names with their values, as a Response carries them; attributes without a
    value are left out, not sent empty."""
    table = profile.by_name()
    released = []
    for name in names:
        attribute = table[name]
        value = attribute.value(authentication)
        if value:
            released.append(Attribute(name, attribute.friendly_name, (value,)))
    return released


@dataclass(frozen=True)
class Addressing:
    """Where a Response goes and what it answers: the same for success and error."""

    issuer: str
    destination: str
    in_response_to: str


@dataclass(frozen=True)
class BuiltResponse:
    """A signed Response: the XML document and, for a login, the subject it names."""

    xml: bytes
    subject: Subject | None

    @property
    def encoded(self) -> str:
        """Base64 of the document, as the HTTP-POST binding's SAMLResponse field carries it."""
        return base64.b64encode(self.xml).decode("ascii")


def new_id() -> str:
    """A fresh XML ID: 160 random bits, starting with a letter so that it is an NCName."""
    return "id-" + secrets.token_hex(20)


def new_subject(name_id: NameId) -> Subject:
    """``name_id`` with a fresh SessionIndex: the subject of one Response."""
    return Subject(
        name_id=name_id.value,
        name_id_format=name_id.format,
        name_qualifier=name_id.name_qualifier,
        sp_name_qualifier=name_id.sp_name_qualifier,
        session_index=new_id(),
    )


def _instant(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _element(
    parent: etree._Element, namespace: str, name: str, text: str | None = None
) -> etree._Element:
    child = etree.SubElement(parent, f"{{{namespace}}}{name}")
    if text is not None:
        child.text = text
    return child


def _issuer(parent: etree._Element, issuer: str) -> None:
    _element(parent, SAML_NS, "Issuer", issuer).set("Format", NAMEID_FORMAT_ENTITY)


def _signature_template(parent: etree._Element, cert: str) -> None:
    """An enveloped ds:Signature over ``parent`` (by its ID), to be filled in by signing.

    Placed right after the Issuer, where the schemas of both Response and Assertion want it.
    """
    signature = etree.Element(f"{{{DSIG_NS}}}Signature")
    parent.insert(1, signature)
    signed_info = _element(signature, DSIG_NS, "SignedInfo")
    _element(signed_info, DSIG_NS, "CanonicalizationMethod").set("Algorithm", EXC_C14N)
    _element(signed_info, DSIG_NS, "SignatureMethod").set("Algorithm", RSA_SHA256)
    reference = _element(signed_info, DSIG_NS, "Reference")
    reference.set("URI", f"#{parent.get('ID')}")
    transforms = _element(reference, DSIG_NS, "Transforms")
    _element(transforms, DSIG_NS, "Transform").set("Algorithm", ENVELOPED)
    _element(transforms, DSIG_NS, "Transform").set("Algorithm", EXC_C14N)
    _element(reference, DSIG_NS, "DigestMethod").set("Algorithm", SHA256)
    _element(reference, DSIG_NS, "DigestValue", "")
    _element(signature, DSIG_NS, "SignatureValue", "")
    key_info = _element(signature, DSIG_NS, "KeyInfo")
    _element(_element(key_info, DSIG_NS, "X509Data"), DSIG_NS, "X509Certificate", cert)


def _response(addressing: Addressing, now: dt.datetime) -> etree._Element:
    response = etree.Element(f"{{{SAMLP_NS}}}Response", nsmap=NSMAP)
    response.set("ID", new_id())
    response.set("Version", "2.0")
    response.set("IssueInstant", _instant(now))
    response.set("Destination", addressing.destination)
    response.set("InResponseTo", addressing.in_response_to)
    _issuer(response, addressing.issuer)
    return response


def _sign_and_serialise(
    response: etree._Element,
    signer: ResponseSigner,
    assertion: etree._Element | None,
    recipient: Recipient | None = None,
) -> bytes:
    # The Assertion first: the Response's digest covers the Assertion's finished signature
    # (and, for an SP with an encryption key, the EncryptedAssertion that replaced it).
    if assertion is not None:
        _signature_template(assertion, signer.certificate_base64)
        sign_enveloped(assertion, signer.key)
        if recipient is not None:
            # The Assertion is the Response's last child: the wrapper takes its place.
            wrapper = _element(response, SAML_NS, "EncryptedAssertion")
            response.remove(assertion)
            wrapper.append(encrypt_assertion(assertion, recipient))
    _signature_template(response, signer.certificate_base64)
    sign_enveloped(response, signer.key)
    return etree.tostring(response, xml_declaration=True, encoding="UTF-8")


def build_login_response(
    addressing: Addressing,
    *,
    audience: str,
    subject: Subject,
    authn_instant: int,
    authn_context_class: str,
    attributes: Sequence[Attribute],
    lifetime: dt.timedelta,
    signer: ResponseSigner,
    encrypt_for: Recipient | None = None,
    now: dt.datetime | None = None,
) -> BuiltResponse:
    """A Success Response with one signed Assertion about ``subject``, signed itself.

    Give every Response a subject of its own (:func:`new_subject`: a fresh SessionIndex);
    :attr:`BuiltResponse.subject` says what the SP received (for Single Logout). The Assertion
    is valid from ``now`` for ``lifetime`` and for the SP ``audience`` only; bearer
    confirmation is bound to the ACS (``destination``) and the request (``in_response_to``).
    With ``encrypt_for``, the signed Assertion is sent only as a ``saml:EncryptedAssertion``
    for that key (:mod:`idp.saml.encryption`, which raises
    :class:`~idp.saml.encryption.EncryptionError` rather than send it in clear).
    """
    now = now or dt.datetime.now(dt.UTC)
    until = _instant(now + lifetime)
    try:
        response = _response(addressing, now)
        status = _element(response, SAMLP_NS, "Status")
        _element(status, SAMLP_NS, "StatusCode").set("Value", STATUS_SUCCESS)

        assertion = _element(response, SAML_NS, "Assertion")
        assertion.set("ID", new_id())
        assertion.set("Version", "2.0")
        assertion.set("IssueInstant", _instant(now))
        _issuer(assertion, addressing.issuer)

        _subject(assertion, subject, addressing, until)
        _conditions(assertion, _instant(now), until, audience)
        _authn_statement(assertion, authn_instant, subject.session_index, authn_context_class)
        if attributes:
            _attribute_statement(assertion, attributes)
    except ValueError as exc:  # lxml: "All strings must be XML compatible"
        raise ResponseContentError(str(exc)) from exc
    return BuiltResponse(_sign_and_serialise(response, signer, assertion, encrypt_for), subject)


def _subject(
    assertion: etree._Element, subject: Subject, addressing: Addressing, until: str
) -> None:
    """The Subject: the NameID, and bearer confirmation bound to the ACS and the request."""
    subject_element = _element(assertion, SAML_NS, "Subject")
    name = _element(subject_element, SAML_NS, "NameID", subject.name_id)
    name.set("Format", subject.name_id_format)
    name.set("NameQualifier", subject.name_qualifier)
    name.set("SPNameQualifier", subject.sp_name_qualifier)
    confirmation = _element(subject_element, SAML_NS, "SubjectConfirmation")
    confirmation.set("Method", CM_BEARER)
    data = _element(confirmation, SAML_NS, "SubjectConfirmationData")
    data.set("NotOnOrAfter", until)
    data.set("Recipient", addressing.destination)
    data.set("InResponseTo", addressing.in_response_to)


def _conditions(assertion: etree._Element, not_before: str, until: str, audience: str) -> None:
    conditions = _element(assertion, SAML_NS, "Conditions")
    conditions.set("NotBefore", not_before)
    conditions.set("NotOnOrAfter", until)
    restriction = _element(conditions, SAML_NS, "AudienceRestriction")
    _element(restriction, SAML_NS, "Audience", audience)


def _authn_statement(
    assertion: etree._Element, authn_instant: int, session_index: str, context_class: str
) -> None:
    statement = _element(assertion, SAML_NS, "AuthnStatement")
    statement.set("AuthnInstant", _instant(dt.datetime.fromtimestamp(authn_instant, dt.UTC)))
    statement.set("SessionIndex", session_index)
    context = _element(statement, SAML_NS, "AuthnContext")
    _element(context, SAML_NS, "AuthnContextClassRef", context_class)


def _attribute_statement(assertion: etree._Element, attributes: Sequence[Attribute]) -> None:
    attribute_statement = _element(assertion, SAML_NS, "AttributeStatement")
    for attribute in attributes:
        element = _element(attribute_statement, SAML_NS, "Attribute")
        element.set("Name", attribute.name)
        element.set("NameFormat", NAME_FORMAT_URI)
        element.set("FriendlyName", attribute.friendly_name)
        for value in attribute.values:
            # xsi:type names xs:string: declare xs where it is used, as pysaml2 did.
            holder = etree.SubElement(element, f"{{{SAML_NS}}}AttributeValue", nsmap={"xs": XS_NS})
            holder.set(f"{{{XSI_NS}}}type", "xs:string")
            holder.text = value


def build_status_response(
    addressing: Addressing,
    *,
    status: str,
    message: str,
    signer: ResponseSigner,
    top_status: str = STATUS_RESPONDER,
    now: dt.datetime | None = None,
) -> BuiltResponse:
    """A signed Response without an Assertion: ``top_status`` (Responder unless the request
    was at fault), then the second-level ``status``, and ``message`` for people reading logs
    (e.g. NoPassive when there is no session)."""
    try:
        response = _response(addressing, now or dt.datetime.now(dt.UTC))
        status_element = _element(response, SAMLP_NS, "Status")
        top = _element(status_element, SAMLP_NS, "StatusCode")
        top.set("Value", top_status)
        _element(top, SAMLP_NS, "StatusCode").set("Value", status)
        _element(status_element, SAMLP_NS, "StatusMessage", message)
    except ValueError as exc:
        raise ResponseContentError(str(exc)) from exc
    return BuiltResponse(_sign_and_serialise(response, signer, None), None)

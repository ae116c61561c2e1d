"""Reading an AuthnRequest: one lxml parse of the decoded octets, checked against the SAML
protocol schema, its values read from that same tree.

The octets were bounded and refused if they carry a DTD or entity before they get here
(:mod:`idp.saml.messages`); the parser also loads no DTD, resolves no entity and opens no
network connection (:func:`idp.saml.xmlsec_backend.parse_document`). An enveloped signature
is verified on this very tree (:meth:`XmlSecBackend.verify_enveloped`), so the values used are
the values signed. What a request means (who sent it, where to answer, what to assert) is
decided by :class:`idp.saml.server.SamlIdentityProvider`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib.resources import files

import saml2.data.schemas
from lxml import etree
from saml2.sigver import SignatureError

from idp.saml.messages import MessageRejected
from idp.saml.reasons import SamlReason
from idp.saml.xmlsec_backend import parse_document

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
AUTHN_REQUEST = f"{SAMLP}:AuthnRequest"


class _LocalSchemas(etree.Resolver):
    """Schema imports name W3C URLs: answer them with the copies pysaml2 ships, never the
    network."""

    def resolve(self, url: str | None, pubid: str | None, context: object) -> object:
        candidate = files(saml2.data.schemas).joinpath((url or "").rsplit("/", 1)[-1])
        return self.resolve_filename(str(candidate), context) if candidate.is_file() else None


def _protocol_schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    parser.resolvers.add(_LocalSchemas())
    source = files(saml2.data.schemas).joinpath("saml-schema-protocol-2.0.xsd")
    return etree.XMLSchema(etree.parse(str(source), parser))


# Built once, at import, on one thread: building it in each request thread failed now and then
# under load (an xs:import left unresolved, seen as a 500 in tests/test_faults.py). A
# validation's errors are kept on the schema object (``error_log``), so one validation at a
# time, its error read under the same lock.
_PROTOCOL_SCHEMA = _protocol_schema()
_SCHEMA_LOCK = threading.Lock()


def _schema_problem(root: etree._Element) -> str | None:
    """Why ``root`` breaks the SAML protocol schema, or None if it holds."""
    with _SCHEMA_LOCK:
        if _PROTOCOL_SCHEMA.validate(root):
            return None
        error = _PROTOCOL_SCHEMA.error_log.last_error
        return error.message[:200] if error is not None else "schema"


@dataclass(frozen=True)
class NameIdPolicy:
    format: str
    sp_name_qualifier: str
    allow_create: str | None


@dataclass(frozen=True)
class RequestedContext:
    comparison: str | None
    class_refs: tuple[str, ...]
    has_decl_ref: bool


@dataclass(frozen=True)
class AuthnRequestXml:
    """An AuthnRequest as received: its tree (for the signature check) and its values, as
    text (attributes the schema makes optional are None when absent)."""

    root: etree._Element
    id: str
    version: str
    issue_instant: str
    issuer: str
    destination: str | None
    force_authn: str | None
    is_passive: str | None
    protocol_binding: str | None
    acs_url: str | None
    acs_index: str | None
    name_id_policy: NameIdPolicy | None
    requested_context: RequestedContext | None
    signed: bool


def read_authn_request(xml: bytes) -> AuthnRequestXml:
    """Parse and schema-check ``xml``; raise :class:`MessageRejected` if it is not a valid
    samlp:AuthnRequest. A signed request that breaks the schema is ``bad_signature``, as
    pysaml2 reported it (its signature check validated the schema first)."""
    try:
        root = parse_document(xml)
    except SignatureError as exc:
        raise MessageRejected(SamlReason.MALFORMED_REQUEST, str(exc)[:200]) from exc
    if root.tag != f"{{{SAMLP}}}AuthnRequest":
        raise MessageRejected(
            SamlReason.MALFORMED_REQUEST, f"expected samlp:AuthnRequest, got {root.tag}"
        )
    signed = root.find(f"{{{DS}}}Signature") is not None
    problem = _schema_problem(root)
    if problem is not None:
        reason = SamlReason.BAD_SIGNATURE if signed else SamlReason.MALFORMED_REQUEST
        raise MessageRejected(reason, f"not a valid AuthnRequest: {problem}")
    return _values(root, signed)


def _values(root: etree._Element, signed: bool) -> AuthnRequestXml:
    # The schema holds: ID, Version and IssueInstant are present, each child at most once.
    issuer = root.find(f"{{{SAML}}}Issuer")
    return AuthnRequestXml(
        root=root,
        id=root.get("ID", ""),
        version=root.get("Version", ""),
        issue_instant=root.get("IssueInstant", ""),
        issuer=(issuer.text or "").strip() if issuer is not None else "",
        destination=root.get("Destination"),
        force_authn=root.get("ForceAuthn"),
        is_passive=root.get("IsPassive"),
        protocol_binding=root.get("ProtocolBinding"),
        acs_url=root.get("AssertionConsumerServiceURL"),
        acs_index=root.get("AssertionConsumerServiceIndex"),
        name_id_policy=_name_id_policy(root.find(f"{{{SAMLP}}}NameIDPolicy")),
        requested_context=_requested_context(root.find(f"{{{SAMLP}}}RequestedAuthnContext")),
        signed=signed,
    )


def _name_id_policy(element: etree._Element | None) -> NameIdPolicy | None:
    if element is None:
        return None
    return NameIdPolicy(
        element.get("Format", ""), element.get("SPNameQualifier", ""), element.get("AllowCreate")
    )


def _requested_context(element: etree._Element | None) -> RequestedContext | None:
    if element is None:
        return None
    return RequestedContext(
        comparison=element.get("Comparison"),
        class_refs=tuple(
            (ref.text or "").strip() for ref in element.findall(f"{{{SAML}}}AuthnContextClassRef")
        ),
        has_decl_ref=element.find(f"{{{SAML}}}AuthnContextDeclRef") is not None,
    )

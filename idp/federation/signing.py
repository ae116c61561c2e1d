"""Enveloped signatures on metadata documents, made and checked by the in-process backend.

No signature code here: the template comes from the python ``xmlsec`` bindings and the signing
and verification from :class:`idp.saml.xmlsec_backend.XmlSecBackend`, which also enforces the
SAML signature profile (one enveloped Reference to the root's ID, exclusive C14N, RSA/ECDSA with
SHA-256 or SHA-512, the key given by the caller and never one from KeyInfo).
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree
from saml2.sigver import SignatureError

from idp.federation.document import DSIG_NS, MD_NS
from idp.saml.xmlsec_backend import XmlSecBackend, shared_backend

XMLSEC_BINARY = "/usr/bin/xmlsec1"


class MetadataSignatureError(Exception):
    """The metadata's signature is missing, malformed, or not made by the expected key."""


def backend() -> XmlSecBackend:
    """The process-wide in-process backend (its key cache is shared with the SAML IdP)."""
    return shared_backend(XMLSEC_BINARY)


def has_signature(root: etree._Element) -> bool:
    """Whether the root element carries its own enveloped ds:Signature (a direct child)."""
    return root.find(f"{{{DSIG_NS}}}Signature") is not None


def _node_name(root: etree._Element) -> str:
    # pysaml2's "namespace:LocalName" form, which the backend expects.
    return f"{MD_NS}:{etree.QName(root).localname}"


def sign_metadata(root: etree._Element, key_file: Path, cert_file: Path) -> bytes:
    """Sign ``root`` (an EntityDescriptor or EntitiesDescriptor) in place; return the document.

    Gives the root an ``ID`` if it has none and puts the ds:Signature first, where the metadata
    schema wants it. The signature uses RSA-SHA256 (ECDSA-SHA256 for an EC key), a SHA-256
    digest and exclusive canonicalisation, and carries ``cert_file`` in its KeyInfo.
    """
    for old in root.findall(f"{{{DSIG_NS}}}Signature"):
        root.remove(old)
    node_id = root.get("ID")
    if not node_id:
        node_id = "_" + secrets.token_hex(16)
        root.set("ID", node_id)
    certificate = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    method = (
        xmlsec.Transform.ECDSA_SHA256
        if isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
        else xmlsec.Transform.RSA_SHA256
    )
    signature = xmlsec.template.create(root, xmlsec.Transform.EXCL_C14N, method, ns="ds")
    reference = xmlsec.template.add_reference(signature, xmlsec.Transform.SHA256, uri=f"#{node_id}")
    xmlsec.template.add_transform(reference, xmlsec.Transform.ENVELOPED)
    xmlsec.template.add_transform(reference, xmlsec.Transform.EXCL_C14N)
    key_info = xmlsec.template.ensure_key_info(signature)
    xmlsec.template.add_x509_data(key_info)
    root.insert(0, signature)
    signed = backend().sign_statement(
        etree.tostring(root), _node_name(root), str(key_file), node_id
    )
    # The backend fills in the digest and value but not the certificate: add it, outside
    # SignedInfo, so the signature stays valid.
    document = etree.fromstring(signed.encode("utf-8"))
    data = document.find(f"{{{DSIG_NS}}}Signature/{{{DSIG_NS}}}KeyInfo/{{{DSIG_NS}}}X509Data")
    if data is not None and data.find(f"{{{DSIG_NS}}}X509Certificate") is None:
        element = etree.SubElement(data, f"{{{DSIG_NS}}}X509Certificate")
        element.text = "".join(
            line
            for line in Path(cert_file).read_text("ascii").splitlines()
            if line and not line.startswith("-----")
        )
    return etree.tostring(document, xml_declaration=True, encoding="UTF-8")


def verify_metadata_signature(data: bytes, root: etree._Element, cert_file: Path) -> None:
    """Check that ``root`` (parsed from ``data``) is signed, and signed by ``cert_file``'s key.

    Unlike pysaml2's MetadataStore, an unsigned document fails here. Raises
    :class:`MetadataSignatureError` with the reason.
    """
    if not has_signature(root):
        raise MetadataSignatureError("the document is not signed")
    try:
        backend().validate_signature(data, str(cert_file), "pem", _node_name(root), None)
    except SignatureError as exc:
        raise MetadataSignatureError(str(exc)) from exc
    except OSError as exc:
        raise MetadataSignatureError(f"cannot read {cert_file}: {exc}") from exc


def embedded_certificate(root: etree._Element) -> x509.Certificate | None:
    """The certificate in the root signature's KeyInfo, if any (for an untrusted self-check)."""
    text = root.findtext(
        f"{{{DSIG_NS}}}Signature/{{{DSIG_NS}}}KeyInfo/{{{DSIG_NS}}}X509Data/"
        f"{{{DSIG_NS}}}X509Certificate"
    )
    if not text:
        return None
    try:
        return x509.load_der_x509_certificate(base64.b64decode("".join(text.split())))
    except ValueError:
        return None

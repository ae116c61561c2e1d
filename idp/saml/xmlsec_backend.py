"""pysaml2's crypto backend, in-process: XML signatures with the python ``xmlsec`` bindings.

pysaml2's default backend starts the ``xmlsec1`` program twice for every signature or check
(``xmlsec1 --version`` and the operation itself), about 60 ms each time. This backend makes the
same libxmlsec1 calls in-process, on documents parsed by lxml, and keeps the parsed keys.
:func:`sign_enveloped` signs an element of a tree already in hand with the same checks; the
IdP's Responses are signed that way (:mod:`idp.saml.response`).

What pysaml2 checks around the backend still runs: :class:`saml2.sigver.SecurityContext` takes
keys from metadata, checks the SAML XML signature profile (one enveloped signature whose single
Reference points at the signed element's own ID, only the allowed transforms, no ``ds:Object``)
and only then calls :meth:`XmlSecBackend.validate_signature`. This backend repeats those checks
on the document it actually verifies and adds its own:

- documents with a DTD are refused (no entities, no external subsets: CVE-2016-10149);
- the ID attribute is registered for the one element being signed or verified, and that ID must
  occur exactly once in the document (signature wrapping: CVE-2020-5390, CVE-2021-21238);
- the element's own ``ds:Signature`` child is the one used, never one found elsewhere;
- only RSA-SHA256, RSA-SHA512 and ECDSA-SHA256 signatures over SHA-256/SHA-512 digests with
  exclusive canonicalisation are accepted, and the key's type must match the algorithm
  (key-type confusion: CVE-2021-21239);
- the key is the one pysaml2 passes (from metadata), never one from the document's KeyInfo.

pysaml2's encryption and decryption hooks are not implemented here: they are delegated to
pysaml2's :class:`~saml2.sigver.CryptoBackendXmlSec1` (the ``xmlsec1`` program). The IdP never
calls them: it encrypts Assertions in process with :mod:`idp.saml.encryption`.

Thread-safe: every call parses its own document and uses its own signature context; the key
caches are guarded by a lock.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from saml2 import SamlBase
from saml2.sigver import CryptoBackend, CryptoBackendXmlSec1, SignatureError

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
EXC_C14N_WITH_COMMENTS = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"

_RSA, _EC = "RSA", "EC"
# Signature method → (libxmlsec1 transform, the key type it needs).
SIGNATURE_METHODS: dict[str, tuple[Any, str]] = {
    RSA_SHA256: (xmlsec.Transform.RSA_SHA256, _RSA),
    RSA_SHA512: (xmlsec.Transform.RSA_SHA512, _RSA),
    ECDSA_SHA256: (xmlsec.Transform.ECDSA_SHA256, _EC),
}
DIGEST_METHODS: dict[str, Any] = {
    SHA256: xmlsec.Transform.SHA256,
    SHA512: xmlsec.Transform.SHA512,
}
# The same canonicalisations and Reference transforms pysaml2 allows (saml2.xmldsig).
CANONICALIZATIONS: dict[str, Any] = {
    EXC_C14N: xmlsec.Transform.EXCL_C14N,
    EXC_C14N_WITH_COMMENTS: xmlsec.Transform.EXCL_C14N_COMMENTS,
}
REFERENCE_TRANSFORMS: dict[str, Any] = {
    ENVELOPED: xmlsec.Transform.ENVELOPED,
    **CANONICALIZATIONS,
}
_KEY_CACHE_SIZE = 16
_CERT_CACHE_SIZE = 256


def _ds(name: str) -> str:
    return f"{{{DSIG_NS}}}{name}"


@dataclass(frozen=True)
class LoadedKey:
    """A parsed key, shared between threads (a signature context takes its own reference)."""

    key: xmlsec.Key
    key_type: str  # "RSA" or "EC": checked against the signature algorithm


def _key_type(public_key: object) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return _RSA
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return _EC
    raise SignatureError(f"unsupported key type {type(public_key).__name__}")


class _PerThread(threading.local):
    """lxml parsers and compiled XPath expressions are not shared between threads."""

    def __init__(self) -> None:
        self.parser = etree.XMLParser(
            resolve_entities=False,
            load_dtd=False,
            dtd_validation=False,
            no_network=True,
            huge_tree=False,
            remove_blank_text=False,
            remove_comments=False,
            remove_pis=False,
        )
        # Every attribute that can act as an ID (SAML's ID, XML-DSig's Id, xml:id which libxml2
        # registers by itself) and has the value $value. A union of attribute steps: five times
        # faster than testing four attributes on every element.
        self.id_attributes = etree.XPath(
            "//@ID[.=$value] | //@Id[.=$value] | //@id[.=$value] | //@xml:id[.=$value]"
        )


_per_thread = _PerThread()


def parse_document(text: str | bytes) -> etree._Element:
    """Parse ``text`` for signing or verification; raise SignatureError if it carries a DTD.

    Nothing from a DTD is wanted in a SAML message, and an internal subset is how entity
    expansion and external-entity attacks start: refuse any DOCTYPE instead of defusing it.
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        root = etree.fromstring(data, _per_thread.parser)
    except etree.XMLSyntaxError as exc:
        raise SignatureError(f"not well-formed XML: {exc}") from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise SignatureError("documents with a DTD are refused")
    return root


def _target_node(root: etree._Element, node_name: str, node_id: str | None) -> etree._Element:
    """The element to sign or verify: of type ``node_name`` with ID ``node_id``, unique.

    ``node_name`` is pysaml2's ``namespace:Tag`` (e.g. ``urn:oasis:names:tc:SAML:2.0:assertion:
    Assertion``). Without ``node_id`` (metadata signing and checking) the root element is meant.
    """
    namespace, _, local_name = node_name.rpartition(":")
    expected_tag = f"{{{namespace}}}{local_name}"
    if node_id is None:
        node_id = root.get("ID")
        if not node_id:
            raise SignatureError(f"the root element {root.tag} has no ID attribute")
    # Whole-document scan: another element (a moved or copied Assertion, an xml:id) carrying
    # the same ID would give the Reference a second possible target.
    holders = _per_thread.id_attributes(root, value=node_id)
    if len(holders) != 1:
        raise SignatureError(f"ID {node_id!r} is carried by {len(holders)} attributes")
    node = holders[0].getparent()
    if node.tag != expected_tag:
        raise SignatureError(f"element with ID {node_id!r} is {node.tag}, not {expected_tag}")
    if node.get("ID") != node_id:
        raise SignatureError(f"element {node.tag} does not have ID {node_id!r}")
    return node


@dataclass(frozen=True)
class _Profile:
    signature: etree._Element
    signature_method: str
    canonicalization: str
    digest_method: str
    transforms: tuple[str, ...]


def _algorithm(parent: etree._Element, name: str) -> str:
    children = parent.findall(_ds(name))
    if len(children) != 1:
        raise SignatureError(f"ds:{name} must occur exactly once")
    algorithm = children[0].get("Algorithm")
    if not algorithm:
        raise SignatureError(f"ds:{name} has no Algorithm")
    return algorithm


def _enveloped_signature(node: etree._Element, node_id: str, *, signing: bool) -> _Profile:
    """The element's own enveloped ds:Signature, checked against the SAML signature profile.

    Stricter than xmlsec1, which takes the first ds:Signature anywhere below the element.
    """
    signatures = node.findall(_ds("Signature"))
    if len(signatures) != 1:
        raise SignatureError(f"{node.tag} has {len(signatures)} ds:Signature children, not 1")
    signature = signatures[0]
    signed_info = signature.findall(_ds("SignedInfo"))
    if len(signed_info) != 1:
        raise SignatureError("ds:SignedInfo must occur exactly once")
    canonicalization = _algorithm(signed_info[0], "CanonicalizationMethod")
    signature_method = _algorithm(signed_info[0], "SignatureMethod")
    references = signed_info[0].findall(_ds("Reference"))
    if len(references) != 1:
        raise SignatureError("ds:SignedInfo must hold exactly one ds:Reference")
    reference = references[0]
    if reference.get("URI") != f"#{node_id}":
        raise SignatureError(f"the Reference does not point at #{node_id}")
    digest_method = _algorithm(reference, "DigestMethod")
    transform_parents = reference.findall(_ds("Transforms"))
    if len(transform_parents) > 1:
        raise SignatureError("ds:Transforms must occur at most once")
    transforms = tuple(
        transform.get("Algorithm") or ""
        for parent in transform_parents
        for transform in parent.findall(_ds("Transform"))
    )
    if signature.findall(_ds("Object")):
        raise SignatureError("ds:Object is not allowed in a SAML signature")
    if canonicalization not in CANONICALIZATIONS:
        raise SignatureError(f"canonicalisation {canonicalization} refused")
    if signature_method not in SIGNATURE_METHODS:
        raise SignatureError(f"signature method {signature_method} refused")
    if digest_method not in DIGEST_METHODS:
        raise SignatureError(f"digest method {digest_method} refused")
    if (
        not 1 <= len(transforms) <= 2
        or ENVELOPED not in transforms
        or any(transform not in REFERENCE_TRANSFORMS for transform in transforms)
    ):
        raise SignatureError(f"Reference transforms {transforms} refused")
    if not signing and not (signature.findtext(_ds("SignatureValue")) or "").strip():
        raise SignatureError("empty SignatureValue")
    return _Profile(signature, signature_method, canonicalization, digest_method, transforms)


def _context(key: LoadedKey, node: etree._Element, profile: _Profile) -> xmlsec.SignatureContext:
    """A one-use signature context that allows exactly the algorithms of ``profile``."""
    transform, needed_key_type = SIGNATURE_METHODS[profile.signature_method]
    if key.key_type != needed_key_type:
        raise SignatureError(
            f"{profile.signature_method} needs an {needed_key_type} key, not {key.key_type}"
        )
    context = xmlsec.SignatureContext()
    # No keys manager and the key preset: libxmlsec1 never looks for a key in ds:KeyInfo.
    context.key = key.key
    # Only this element's ID is an ID; nothing else in the document can be a Reference target.
    context.register_id(node, "ID")
    # The first enable_* call switches libxmlsec1 from "everything allowed" to this list.
    context.enable_signature_transform(CANONICALIZATIONS[profile.canonicalization])
    context.enable_signature_transform(transform)
    for algorithm in profile.transforms:
        context.enable_reference_transform(REFERENCE_TRANSFORMS[algorithm])
    context.enable_reference_transform(DIGEST_METHODS[profile.digest_method])
    return context


def sign_enveloped(node: etree._Element, key: LoadedKey) -> None:
    """Fill in ``node``'s own ds:Signature template (enveloped, over ``node``'s ID), in place.

    The template is checked against the same profile as every signature this module makes or
    verifies, and ``node``'s ID must be the only attribute in the document with that value.
    Raises :class:`SignatureError` if anything does not hold or libxmlsec1 fails.
    """
    name = etree.QName(node)
    root = node.getroottree().getroot()
    if _target_node(root, f"{name.namespace}:{name.localname}", node.get("ID")) is not node:
        raise SignatureError(f"the ID of {node.tag} names another element")
    _sign(node, key)


def _sign(node: etree._Element, key: LoadedKey) -> None:
    profile = _enveloped_signature(node, node.get("ID") or "", signing=True)
    try:
        _context(key, node, profile).sign(profile.signature)
    except xmlsec.Error as exc:
        raise SignatureError(f"signing {node.tag} failed: {exc}") from exc


class XmlSecBackend(CryptoBackend):
    """A :class:`saml2.sigver.CryptoBackend` that signs and verifies in-process.

    Implemented: :meth:`sign_statement`, :meth:`validate_signature`, :attr:`version`.
    Delegated to ``xmlsec1`` (pysaml2's :class:`~saml2.sigver.CryptoBackendXmlSec1`):
    :meth:`encrypt`, :meth:`encrypt_assertion`, :meth:`decrypt`.

    Failures raise :class:`saml2.sigver.SignatureError`, as pysaml2's own backend does; a
    successful check returns True. (Never False: ``MetadataStore`` ignores the return value.)
    """

    def __init__(self, xmlsec_binary: str) -> None:
        super().__init__()
        self._fallback = CryptoBackendXmlSec1(xmlsec_binary)
        self._lock = threading.Lock()
        # path → ((mtime_ns, size, inode), key): re-read only when the file changes.
        self._private_keys: OrderedDict[str, tuple[tuple[int, int, int], LoadedKey]] = OrderedDict()
        # (sha256 of file, format) → key; pysaml2 writes each metadata certificate to a fresh
        # temporary file per check, so the content is the only useful cache key.
        self._certificates: OrderedDict[tuple[bytes, str], LoadedKey] = OrderedDict()

    @property
    def version(self) -> str:
        """libxmlsec1's version, e.g. ``1.3.9``."""
        return ".".join(str(part) for part in xmlsec.get_libxmlsec_version())

    # --- keys --------------------------------------------------------------------------------

    def private_key(self, key_file: str) -> LoadedKey:
        """The private key in ``key_file`` (PEM), parsed once and kept while the file is unchanged.

        Parsing a PEM RSA key (with its consistency check) costs tens of milliseconds: far more
        than the signature itself.
        """
        stat = os.stat(key_file)
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with self._lock:
            cached = self._private_keys.get(key_file)
            if cached is not None and cached[0] == stamp:
                self._private_keys.move_to_end(key_file)
                return cached[1]
            with open(key_file, "rb") as handle:
                pem = handle.read()
            try:
                parsed = serialization.load_pem_private_key(pem, password=None)
                key_type = _key_type(parsed.public_key())
                key = xmlsec.Key.from_memory(pem, xmlsec.KeyFormat.PEM, None)
            except (ValueError, TypeError, xmlsec.Error) as exc:
                raise SignatureError(f"cannot load the private key in {key_file}") from exc
            loaded = LoadedKey(key, key_type)
            self._private_keys[key_file] = (stamp, loaded)
            self._private_keys.move_to_end(key_file)
            while len(self._private_keys) > _KEY_CACHE_SIZE:
                self._private_keys.popitem(last=False)
            return loaded

    def certificate_key(self, cert_file: str, cert_type: str = "pem") -> LoadedKey:
        """The public key of the certificate in ``cert_file`` (``pem`` or ``der``)."""
        with open(cert_file, "rb") as handle:
            data = handle.read()
        try:
            return self.certificate_key_of(data, cert_type)
        except SignatureError as exc:
            raise SignatureError(f"cannot load the certificate in {cert_file}") from exc

    def certificate_key_of(self, data: bytes, cert_type: str = "der") -> LoadedKey:
        """The public key of the certificate ``data`` (``pem`` or ``der``), parsed once."""
        cache_key = (hashlib.sha256(data).digest(), cert_type)
        with self._lock:
            cached = self._certificates.get(cache_key)
            if cached is not None:
                self._certificates.move_to_end(cache_key)
                return cached
        try:
            if cert_type == "pem":
                certificate = x509.load_pem_x509_certificate(data)
                key_format = xmlsec.KeyFormat.CERT_PEM
            elif cert_type == "der":
                certificate = x509.load_der_x509_certificate(data)
                key_format = xmlsec.KeyFormat.CERT_DER
            else:
                raise SignatureError(f"unsupported certificate type {cert_type}")
            loaded = LoadedKey(
                xmlsec.Key.from_memory(data, key_format, None),
                _key_type(certificate.public_key()),
            )
        except (ValueError, xmlsec.Error) as exc:
            raise SignatureError("cannot load the certificate") from exc
        with self._lock:
            self._certificates[cache_key] = loaded
            while len(self._certificates) > _CERT_CACHE_SIZE:
                self._certificates.popitem(last=False)
        return loaded

    # --- signatures --------------------------------------------------------------------------

    def sign_statement(
        self,
        statement: str | bytes | SamlBase,
        node_name: str,
        key_file: str,
        node_id: str | None,
    ) -> str:
        """Fill in the ds:Signature template of the element ``node_name`` with ID ``node_id``.

        ``statement`` carries the template pysaml2's ``pre_signature_part`` made (algorithms,
        Reference URI, KeyInfo with our certificate). Returns the whole document, signed, as
        a string with an XML declaration, as ``CryptoBackendXmlSec1`` does.
        """
        if isinstance(statement, SamlBase):
            statement = str(statement)
        root = parse_document(statement)
        _sign(_target_node(root, node_name, node_id), self.private_key(key_file))
        return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8").decode(
            "utf-8"
        )

    def validate_signature(
        self,
        signedtext: str | bytes,
        cert_file: str,
        cert_type: str,
        node_name: str,
        node_id: str | None,
    ) -> bool:
        """Verify the enveloped signature of the element ``node_name`` with ID ``node_id``.

        The key is the certificate in ``cert_file`` (pysaml2 passes one from metadata). Returns
        True if the signature is valid; raises :class:`SignatureError` otherwise.
        """
        root = parse_document(signedtext)
        node = _target_node(root, node_name, node_id)
        profile = _enveloped_signature(node, node.get("ID") or "", signing=False)
        key = self.certificate_key(cert_file, cert_type)
        try:
            # libxmlsec1 errors (including VerificationError) become SignatureError, which
            # pysaml2's _check_signature treats as "not this certificate" and MetadataStore as
            # "not signed by it"; anything else would escape as an unexpected error.
            _context(key, node, profile).verify(profile.signature)
        except xmlsec.Error as exc:
            raise SignatureError(f"the signature of {node_name} is invalid: {exc}") from exc
        return True

    def verify_enveloped(
        self, root: etree._Element, node_name: str, keys: Sequence[LoadedKey]
    ) -> None:
        """Verify the root element's own enveloped signature on the tree already parsed (the
        octets read are the octets verified), with any one of ``keys``; raise
        :class:`SignatureError` if none verifies it."""
        node = _target_node(root, node_name, root.get("ID"))
        profile = _enveloped_signature(node, node.get("ID") or "", signing=False)
        if not keys:
            raise SignatureError("no key to verify the signature with")
        problems = []
        for key in keys:
            try:
                _context(key, node, profile).verify(profile.signature)
                return
            except (xmlsec.Error, SignatureError) as exc:
                problems.append(str(exc))
        raise SignatureError(f"the signature of {node_name} is invalid: {'; '.join(problems)}")

    # --- delegated to xmlsec1 ----------------------------------------------------------------

    def encrypt(
        self, text: str, recv_key: str, template: str, session_key_type: str, xpath: str = ""
    ) -> Any:
        """Delegated to ``xmlsec1`` (not used by the IdP, see :mod:`idp.saml.encryption`)."""
        return self._fallback.encrypt(text, recv_key, template, session_key_type, xpath)

    def encrypt_assertion(
        self,
        statement: Any,
        enc_key: str,
        template: str,
        key_type: str = "des-192",
        node_xpath: str | None = None,
        node_id: str | None = None,
    ) -> Any:
        """Delegated to ``xmlsec1`` (not used by the IdP)."""
        return self._fallback.encrypt_assertion(
            statement, enc_key, template, key_type, node_xpath, node_id
        )

    def decrypt(self, enctext: str, key_file: str) -> Any:
        """Delegated to ``xmlsec1`` (not used by the IdP)."""
        return self._fallback.decrypt(enctext, key_file)


_shared: dict[str, XmlSecBackend] = {}
_shared_lock = threading.Lock()


def shared_backend(xmlsec_binary: str) -> XmlSecBackend:
    """The process-wide backend, so its key cache outlives rebuilt pysaml2 servers."""
    with _shared_lock:
        backend = _shared.get(xmlsec_binary)
        if backend is None:
            backend = _shared[xmlsec_binary] = XmlSecBackend(xmlsec_binary)
        return backend

"""Encrypted Assertions (``saml:EncryptedAssertion``) for SPs that publish an encryption key.

The Swedish eID Framework wants the Assertion encrypted for every SP whose metadata holds an
encryption key (a ``KeyDescriptor`` with ``use="encryption"`` or without ``use``). What a caller
may rely on:

- :func:`choose_recipient` picks the SP's key and the algorithms from its metadata, and says
  why when it cannot (a key that is not RSA, an RSA key under 2048 bits, a certificate that
  does not parse). It is cached per distinct input and logs each problem once per process.
- The algorithms are only ever AES-GCM (256 or 128 bits) for the content and RSA-OAEP for the
  key: ``xmlenc#rsa-oaep-mgf1p`` or ``xmlenc11#rsa-oaep``. 3DES, AES-CBC and RSA PKCS#1 v1.5
  are never used, even if the SP asks for nothing else; then the defaults are used and the
  refusal is logged.
- Preferences: the first acceptable ``md:EncryptionMethod`` of the chosen key wins, for the
  content and for the key transport separately, with the ``ds:DigestMethod`` (and for
  ``xmlenc11#rsa-oaep`` the ``xenc11:MGF``) the SP states.
- Defaults: AES-256-GCM, and ``rsa-oaep-mgf1p`` with a SHA-1 OAEP digest: the key transport the
  eID Framework makes mandatory "for interoperability reasons" (Deployment Profile §8.4), the
  one every SP library decrypts (xmlseclibs in SimpleSAMLphp, the ``xmlsec1`` 1.2 program that
  pysaml2 runs). SHA-1 there only pads; it is not a signature digest.
- :func:`encrypt_assertion` encrypts an already signed Assertion in process: the content with
  the python ``xmlsec`` bindings, under a fresh random key each time, which is wrapped with
  ``cryptography``'s RSA-OAEP (why: see there).
"""

from __future__ import annotations

import base64
import copy
import functools
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree

from idp.saml.xmlsec_backend import DSIG_NS, SHA256, SHA512

logger = logging.getLogger(__name__)

MD_NS = "urn:oasis:names:tc:SAML:2.0:metadata"
XENC_NS = "http://www.w3.org/2001/04/xmlenc#"
XENC11_NS = "http://www.w3.org/2009/xmlenc11#"

AES128_GCM = f"{XENC11_NS}aes128-gcm"
AES256_GCM = f"{XENC11_NS}aes256-gcm"
RSA_OAEP_MGF1P = f"{XENC_NS}rsa-oaep-mgf1p"
RSA_OAEP = f"{XENC11_NS}rsa-oaep"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
MGF1_SHA1 = f"{XENC11_NS}mgf1sha1"
MGF1_SHA256 = f"{XENC11_NS}mgf1sha256"
MGF1_SHA384 = f"{XENC11_NS}mgf1sha384"
MGF1_SHA512 = f"{XENC11_NS}mgf1sha512"

AES192_GCM = f"{XENC11_NS}aes192-gcm"
TRIPLEDES_CBC = f"{XENC_NS}tripledes-cbc"
AES128_CBC = f"{XENC_NS}aes128-cbc"
AES192_CBC = f"{XENC_NS}aes192-cbc"
AES256_CBC = f"{XENC_NS}aes256-cbc"
RSA_1_5 = f"{XENC_NS}rsa-1_5"

# Never used, whatever an SP asks for: named so that the log can say what was refused.
REFUSED_ALGORITHMS = {
    TRIPLEDES_CBC: "3DES",
    AES128_CBC: "AES-128-CBC",
    AES192_CBC: "AES-192-CBC",
    AES256_CBC: "AES-256-CBC",
    RSA_1_5: "RSA PKCS#1 v1.5",
}
# Content encryption: algorithm → (libxmlsec transform, session key bits), preferred first.
CONTENT_ALGORITHMS = {
    AES256_GCM: (xmlsec.constants.TransformAes256Gcm, 256),
    AES128_GCM: (xmlsec.constants.TransformAes128Gcm, 128),
}
KEY_TRANSPORTS = (RSA_OAEP_MGF1P, RSA_OAEP)
# What an EncryptionMethod may name for each of the two jobs; others (key wrap, say) are not
# about either and are skipped.
CONTENT_FAMILY = frozenset(
    {*CONTENT_ALGORITHMS, AES192_GCM, TRIPLEDES_CBC, AES128_CBC, AES192_CBC, AES256_CBC}
)
KEY_TRANSPORT_FAMILY = frozenset({*KEY_TRANSPORTS, RSA_1_5})
OAEP_DIGESTS = (SHA1, SHA256, SHA384, SHA512)
MGFS = (MGF1_SHA1, MGF1_SHA256, MGF1_SHA384, MGF1_SHA512)
MIN_RSA_BITS = 2048
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    SHA1: hashes.SHA1,
    SHA256: hashes.SHA256,
    SHA384: hashes.SHA384,
    SHA512: hashes.SHA512,
    MGF1_SHA1: hashes.SHA1,
    MGF1_SHA256: hashes.SHA256,
    MGF1_SHA384: hashes.SHA384,
    MGF1_SHA512: hashes.SHA512,
}

DEFAULT_CONTENT = AES256_GCM
DEFAULT_KEY_TRANSPORT = RSA_OAEP_MGF1P
# xmlenc11#rsa-oaep without a stated digest: SHA-256 (an SP naming the XML Encryption 1.1
# identifier decrypts more than SHA-1), the mask generation function stays MGF1 with SHA-1.
DEFAULT_RSA_OAEP_DIGEST = SHA256


@dataclass(frozen=True)
class MethodOffer:
    """One ``md:EncryptionMethod`` of an SP's KeyDescriptor, in the SP's order."""

    algorithm: str
    digest: str | None = None
    mgf: str | None = None


@dataclass(frozen=True)
class KeyOffer:
    """One encryption KeyDescriptor: its certificate (DER) and its EncryptionMethods."""

    certificate_der: bytes
    methods: tuple[MethodOffer, ...] = ()


@dataclass(frozen=True)
class Algorithms:
    """What the EncryptedAssertion is made with."""

    content: str
    key_transport: str
    oaep_digest: str
    mgf: str | None  # only for xmlenc11#rsa-oaep; rsa-oaep-mgf1p fixes MGF1 with SHA-1


@dataclass(frozen=True)
class Recipient:
    """The SP's public key and certificate, and the algorithms chosen for it."""

    subject: str
    public_key: rsa.RSAPublicKey
    certificate_base64: str
    algorithms: Algorithms


@dataclass(frozen=True)
class Choice:
    """The recipient, or None; ``problems`` says what was unusable or refused (also logged)."""

    recipient: Recipient | None
    problems: tuple[str, ...]


class EncryptionError(Exception):
    """The Assertion could not be encrypted: nothing may be sent instead."""


def _subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string() or "(empty subject)"


def usable_key(certificate: x509.Certificate) -> rsa.RSAPublicKey | str:
    """The certificate's key if it can receive an encrypted Assertion, else why not."""
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        # Key agreement (ECDH-ES) is not offered: only RSA key transport is.
        kind = (
            f"an EC key ({key.curve.name})"
            if isinstance(key, ec.EllipticCurvePublicKey)
            else f"a {type(key).__name__}"
        )
        return f"{_subject(certificate)} has {kind}, not an RSA key (RSA-OAEP only)"
    if key.key_size < MIN_RSA_BITS:
        return f"{_subject(certificate)} has a {key.key_size}-bit RSA key (minimum {MIN_RSA_BITS})"
    return key


def _acceptable_transport(offer: MethodOffer) -> bool:
    if offer.algorithm not in KEY_TRANSPORTS:
        return False
    if offer.digest is not None and offer.digest not in OAEP_DIGESTS:
        return False
    return offer.algorithm != RSA_OAEP or offer.mgf is None or offer.mgf in MGFS


def _named(offer: MethodOffer) -> str:
    name = REFUSED_ALGORITHMS.get(offer.algorithm, offer.algorithm)
    parameters = [value for value in (offer.digest, offer.mgf) if value]
    return f"{name} ({', '.join(parameters)})" if parameters else name


def choose_algorithms(offers: Sequence[MethodOffer]) -> tuple[Algorithms, list[str]]:
    """The first acceptable content and key transport algorithms among ``offers``.

    Returns the algorithms and, for each of the two where the SP stated wishes but none was
    acceptable, a note saying what was refused and that the default is used.
    """
    notes: list[str] = []
    content_offers = [o for o in offers if o.algorithm in CONTENT_FAMILY]
    content = next((o.algorithm for o in content_offers if o.algorithm in CONTENT_ALGORITHMS), None)
    if content is None and content_offers:
        notes.append(
            "content encryption: the SP asks only for "
            + ", ".join(_named(o) for o in content_offers)
            + f", never used here; using {DEFAULT_CONTENT}"
        )
    transport_offers = [o for o in offers if o.algorithm in KEY_TRANSPORT_FAMILY]
    transport = next((o for o in transport_offers if _acceptable_transport(o)), None)
    if transport is None and transport_offers:
        notes.append(
            "key transport: the SP asks only for "
            + ", ".join(_named(o) for o in transport_offers)
            + f", never used here; using {DEFAULT_KEY_TRANSPORT} with SHA-1"
        )
    if transport is None:
        chosen = Algorithms(content or DEFAULT_CONTENT, DEFAULT_KEY_TRANSPORT, SHA1, None)
    elif transport.algorithm == RSA_OAEP:
        chosen = Algorithms(
            content or DEFAULT_CONTENT,
            RSA_OAEP,
            transport.digest or DEFAULT_RSA_OAEP_DIGEST,
            transport.mgf or MGF1_SHA1,
        )
    else:
        chosen = Algorithms(
            content or DEFAULT_CONTENT, RSA_OAEP_MGF1P, transport.digest or SHA1, None
        )
    return chosen, notes


@functools.lru_cache(maxsize=512)
def choose_recipient(entity_id: str, offers: tuple[KeyOffer, ...]) -> Choice:
    """The first usable encryption key of the SP ``entity_id`` and its algorithms.

    ``offers`` are the SP's encryption KeyDescriptors in metadata order. No offers: no
    recipient and no problem (the SP gets a signed Assertion in clear). Offers but none
    usable: no recipient, and the reasons, which are logged once.
    """
    problems: list[str] = []
    for offer in offers:
        try:
            certificate = x509.load_der_x509_certificate(offer.certificate_der)
        except ValueError:
            problems.append("an encryption certificate is not a valid DER X.509 certificate")
            continue
        public_key = usable_key(certificate)
        if isinstance(public_key, str):
            problems.append(public_key)
            continue
        algorithms, notes = choose_algorithms(offer.methods)
        problems.extend(notes)
        for note in problems:
            logger.warning("SP %s, encryption: %s", entity_id, note)
        recipient = Recipient(
            _subject(certificate),
            public_key,
            base64.b64encode(offer.certificate_der).decode("ascii"),
            algorithms,
        )
        return Choice(recipient, tuple(problems))
    for note in problems:
        logger.warning("SP %s, encryption key unusable: %s", entity_id, note)
    return Choice(None, tuple(problems))


def _wrap(content_key: bytes, recipient: Recipient) -> bytes:
    """``content_key`` encrypted for the SP: RSA-OAEP with the chosen digest and MGF1 hash."""
    algorithms = recipient.algorithms
    return recipient.public_key.encrypt(
        content_key,
        padding.OAEP(
            mgf=padding.MGF1(_HASHES[algorithms.mgf or MGF1_SHA1]()),
            algorithm=_HASHES[algorithms.oaep_digest](),
            label=None,
        ),
    )


def _add_encrypted_key(
    encrypted_data: etree._Element, wrapped: bytes, recipient: Recipient
) -> None:
    """The EncryptedKey in the EncryptedData's KeyInfo: the key transport's parameters, the
    SP's certificate (so that an SP holding several decryption keys during a rollover knows
    which one to use), and the wrapped content key."""
    algorithms = recipient.algorithms
    key_info = xmlsec.template.encrypted_data_ensure_key_info(encrypted_data, ns="ds")
    # The bindings name only rsa-oaep-mgf1p; the URI is what the SP reads, so xmlenc11#rsa-oaep
    # is set on the same element.
    encrypted_key = xmlsec.template.add_encrypted_key(key_info, xmlsec.constants.TransformRsaOaep)
    method = encrypted_key.find(f"{{{XENC_NS}}}EncryptionMethod")
    method.set("Algorithm", algorithms.key_transport)
    etree.SubElement(method, f"{{{DSIG_NS}}}DigestMethod").set("Algorithm", algorithms.oaep_digest)
    if algorithms.mgf is not None:
        etree.SubElement(method, f"{{{XENC11_NS}}}MGF", nsmap={"xenc11": XENC11_NS}).set(
            "Algorithm", algorithms.mgf
        )
    certificate_info = etree.Element(f"{{{DSIG_NS}}}KeyInfo")
    method.addnext(certificate_info)
    x509_data = etree.SubElement(certificate_info, f"{{{DSIG_NS}}}X509Data")
    etree.SubElement(x509_data, f"{{{DSIG_NS}}}X509Certificate").text = recipient.certificate_base64
    cipher_value = xmlsec.template.encrypted_data_ensure_cipher_value(encrypted_key)
    cipher_value.text = base64.b64encode(wrapped).decode("ascii")


def encrypt_assertion(assertion: etree._Element, recipient: Recipient) -> etree._Element:
    """``xenc:EncryptedData`` holding ``assertion`` (signed, left untouched), for the SP.

    The Assertion is encrypted as a copy that declares every namespace it uses, so that it
    parses on its own once decrypted, wherever the SP puts it; under a fresh random content
    key each time. Raises :class:`EncryptionError`.

    libxmlsec encrypts the content. The content key is wrapped with ``cryptography``'s RSA-OAEP,
    not libxmlsec's: libxmlsec wraps a key only through a keys manager, and creating one loads
    the system's CA store (23 ms and 0.9 MB each on the development machine), which would cost
    more than the rest of the Response or a manager kept per SP; the bindings cannot run a
    context on an EncryptedKey alone. libxmlsec decrypts what this writes (see the tests).
    """
    standalone = copy.deepcopy(assertion)
    transform, bits = CONTENT_ALGORITHMS[recipient.algorithms.content]
    content_key = secrets.token_bytes(bits // 8)
    try:
        template = xmlsec.template.encrypted_data_create(
            standalone, transform, type=xmlsec.constants.TypeEncElement, ns="xenc"
        )
        xmlsec.template.encrypted_data_ensure_cipher_value(template)
        context = xmlsec.EncryptionContext()
        context.key = xmlsec.Key.from_binary_data(xmlsec.constants.KeyDataAes, content_key)
        encrypted_data = context.encrypt_xml(template, standalone)
        wrapped = _wrap(content_key, recipient)
    except (xmlsec.Error, ValueError) as exc:
        raise EncryptionError(f"encrypting the Assertion for {recipient.subject} failed") from exc
    _add_encrypted_key(encrypted_data, wrapped, recipient)
    return encrypted_data


def certificate_der(text: str) -> bytes | None:
    """The DER bytes of a base64 certificate from metadata (whitespace ignored), or None."""
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except ValueError:
        return None


def encryption_refusal(
    profile: str, required_profiles: Sequence[str], choice: Choice
) -> str | None:
    """Why an SP of attribute profile ``profile`` may get no Assertion at all, or None.

    Only when ``profile`` is one of ``required_profiles`` (``IDP_REQUIRE_ENCRYPTION_PROFILES``)
    and the SP has no usable encryption key: it is refused rather than sent one in clear.
    """
    if choice.recipient is not None or profile not in required_profiles:
        return None
    why = "; ".join(choice.problems) or "its metadata publishes no encryption key"
    return (
        f"Assertions for {profile} SPs are sent only encrypted, and this SP has no usable "
        f"encryption key: {why}"
    )


# --- reading offers from metadata --------------------------------------------------------------
# Two readers, one result: the running IdP reads pysaml2's metadata store (dicts), the
# validator reads the document (lxml). Both hand the same KeyOffers to choose_recipient.


def _offer_from_dict(method: dict[str, Any]) -> MethodOffer:
    digest = mgf = None
    for child in method.get("extension_elements") or []:
        algorithm = child.get("algorithm") or (child.get("attributes") or {}).get("Algorithm")
        kind = str(child.get("__class__") or child.get("tag") or "")
        if kind.endswith("DigestMethod"):
            digest = digest or algorithm
        elif kind.endswith("MGF"):
            mgf = mgf or algorithm
    return MethodOffer(str(method.get("algorithm") or ""), digest, mgf)


def offers_from_descriptor(descriptor: dict[str, Any]) -> tuple[KeyOffer, ...]:
    """The encryption KeyOffers of an SPSSODescriptor as pysaml2's metadata store holds it."""
    offers = []
    for key_descriptor in descriptor.get("key_descriptor") or []:
        if key_descriptor.get("use") not in (None, "", "encryption"):
            continue
        methods = tuple(_offer_from_dict(m) for m in key_descriptor.get("encryption_method") or [])
        for x509_data in (key_descriptor.get("key_info") or {}).get("x509_data") or []:
            text = (x509_data.get("x509_certificate") or {}).get("text") or ""
            offers.append(KeyOffer(certificate_der(text) or b"", methods))
    return tuple(offers)


def _child_algorithm(parent: etree._Element, tag: str) -> str | None:
    child = parent.find(tag)
    return child.get("Algorithm") if child is not None else None


def offers_from_element(sp_descriptor: etree._Element) -> tuple[KeyOffer, ...]:
    """The encryption KeyOffers of an ``md:SPSSODescriptor`` element."""
    offers = []
    for key_descriptor in sp_descriptor.findall(f"{{{MD_NS}}}KeyDescriptor"):
        if key_descriptor.get("use") not in (None, "", "encryption"):
            continue
        methods = tuple(
            MethodOffer(
                method.get("Algorithm") or "",
                _child_algorithm(method, f"{{{DSIG_NS}}}DigestMethod"),
                _child_algorithm(method, f"{{{XENC11_NS}}}MGF"),
            )
            for method in key_descriptor.findall(f"{{{MD_NS}}}EncryptionMethod")
        )
        for text in key_descriptor.iter(f"{{{DSIG_NS}}}X509Certificate"):
            offers.append(KeyOffer(certificate_der(text.text or "") or b"", methods))
    return tuple(offers)

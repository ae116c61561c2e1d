"""Verifying the app's signature over the order's data with the certificate's public key."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from idp.siths.validation import check_card_key

RSA_PKCS1_SHA256 = "rsa-pkcs1-sha256"
ECDSA_SHA256 = "ecdsa-sha256"
SIGNATURE_ALGORITHMS = (RSA_PKCS1_SHA256, ECDSA_SHA256)


def signature_is_valid(
    certificate: x509.Certificate, algorithm: str, signature: bytes, data: bytes
) -> bool:
    """True only if ``signature`` is by the certificate's key over exactly ``data``.

    The algorithm must match the key type; it never chooses which key verifies. A key no card
    may have is never used: :func:`idp.siths.validation.check_card_key` raises
    :class:`~idp.siths.validation.CertificateRejected` (``weak_key``) before anything is verified.
    """
    key = certificate.public_key()
    check_card_key(key)
    return key_signature_is_valid(key, algorithm, signature, data)


def key_signature_is_valid(
    key: CertificatePublicKeyTypes, algorithm: str, signature: bytes, data: bytes
) -> bool:
    """True only if ``signature`` over ``data`` is by ``key`` with the algorithm its type uses
    (RSA PKCS#1 v1.5 or ECDSA, SHA-256); the key's strength is the caller's to check."""
    try:
        if algorithm == RSA_PKCS1_SHA256 and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            return True
        if algorithm == ECDSA_SHA256 and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            return True
    except InvalidSignature:
        return False
    return False

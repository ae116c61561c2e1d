"""Writing keys, certificates and PKCS#12 bundles to disk.

Private keys (and PKCS#12 files, which contain one) are created with mode 0600 from the start,
never written first and restricted afterwards, so there is no moment when another user could
read them. Even test keys get this: the IdP refuses nothing on that account, but habits carry
over to real deployments.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import pkcs12

PRIVATE_FILE_MODE = 0o600

__all__ = [
    "PRIVATE_FILE_MODE",
    "load_certificate",
    "load_private_key",
    "write_certificates",
    "write_p12",
    "write_private_key",
]


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        # The mode given to os.open only applies to new files; an existing file keeps its old
        # mode, so set it explicitly before any secret byte is written.
        os.fchmod(fd, PRIVATE_FILE_MODE)
        os.write(fd, data)
    finally:
        os.close(fd)


def write_private_key(path: Path, key: RSAPrivateKey | EllipticCurvePrivateKey) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM with mode 0600 (replacing any existing file)."""
    _write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def write_certificates(path: Path, certificates: Iterable[x509.Certificate]) -> None:
    """Write one or more certificates as concatenated PEM (a bundle when there are several)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates)
    )


def write_p12(
    path: Path,
    *,
    friendly_name: str,
    key: RSAPrivateKey | EllipticCurvePrivateKey,
    certificate: x509.Certificate,
    ca_certificates: Iterable[x509.Certificate],
    password: bytes,
) -> None:
    """Write a password-protected PKCS#12 with key, certificate and CA certificates, mode 0600.

    The encryption is PBES2/AES-256 with an HMAC-SHA256 MAC and 2048 KDF rounds (OpenSSL 3's
    defaults), which current browsers, OpenSSL, NSS and Windows import; the legacy RC2/3DES
    choice is not used.
    """
    if not password:
        raise ValueError("a PKCS#12 password is required")
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password)
    )
    data = pkcs12.serialize_key_and_certificates(
        friendly_name.encode("utf-8"), key, certificate, list(ca_certificates), encryption
    )
    _write_private(path, data)


def load_certificate(path: Path) -> x509.Certificate:
    """Read the first PEM certificate in ``path``."""
    return x509.load_pem_x509_certificate(path.read_bytes())


def load_private_key(path: Path) -> RSAPrivateKey:
    """Read an unencrypted PEM RSA private key; ``TypeError`` if it is some other kind of key."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, RSAPrivateKey):
        raise TypeError(f"{path} does not hold an RSA private key")
    return key

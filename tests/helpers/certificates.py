"""Throwaway self-signed certificates for tests that need a key the test PKI did not issue."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

ONE_YEAR = dt.timedelta(days=365)


def self_signed(
    private_key: CertificateIssuerPrivateKeyTypes,
    name: str = "sp",
    *,
    hash_algorithm: hashes.HashAlgorithm | None = None,
    not_after: dt.timedelta = ONE_YEAR,
) -> x509.Certificate:
    """A certificate for ``private_key`` with subject and issuer CN=``name``, signed by the key
    itself (SHA-256 unless ``hash_algorithm``), valid until now + ``not_after``. It is valid from
    400 days ago, so a negative ``not_after`` makes an expired certificate."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + not_after)
        .sign(private_key, hash_algorithm or hashes.SHA256())
    )


def make_certificate(
    directory: Path,
    name: str,
    *,
    key_size: int = 2048,
    hash_algorithm: hashes.HashAlgorithm | None = None,
    not_after: dt.timedelta = ONE_YEAR,
) -> tuple[Path, Path, x509.Certificate]:
    """A new RSA key and its :func:`self_signed` certificate (CN=``name``) written as PEM files
    ``<name>.key.pem`` and ``<name>.crt.pem`` in ``directory`` (made if missing):
    (key file, certificate file, certificate)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    certificate = self_signed(key, name, hash_algorithm=hash_algorithm, not_after=not_after)
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / f"{name}.key.pem", directory / f"{name}.crt.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path, certificate


def make_self_signed(directory: Path, name: str, key_size: int = 2048) -> tuple[Path, Path]:
    """:func:`make_certificate` with the defaults: (key file, certificate file)."""
    key_path, cert_path, _certificate = make_certificate(directory, name, key_size=key_size)
    return key_path, cert_path

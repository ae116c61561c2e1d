"""Throwaway self-signed certificates for tests that need a key the test PKI did not issue."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID


def self_signed(
    private_key: CertificateIssuerPrivateKeyTypes, name: str = "sp"
) -> x509.Certificate:
    """A certificate for ``private_key`` with subject and issuer CN=``name``, valid from an hour
    ago for a year, signed with SHA-256 by the key itself."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(private_key, hashes.SHA256())
    )


def make_self_signed(directory: Path, name: str, key_size: int = 2048) -> tuple[Path, Path]:
    """A new RSA key and its self-signed certificate (CN=``name``) written as PEM files
    ``<name>.key.pem`` and ``<name>.crt.pem`` in ``directory`` (made if missing):
    (key file, certificate file)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    key_path, cert_path = directory / f"{name}.key.pem", directory / f"{name}.crt.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(self_signed(key, name).public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path

"""Helpers for metadata tests: the demo SP's metadata, certificates made to order, variants."""

from __future__ import annotations

import base64
import datetime as dt
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.helpers.support import VENV_BIN, run_cli


def demo_sp_metadata(pki_dir: Path) -> str:
    """What `sp-demo metadata` writes (the real command), with the keys of ``pki_dir``."""
    result = run_cli([str(VENV_BIN / "sp-demo"), "metadata"], {"SP_DEMO_PKI_DIR": str(pki_dir)})
    assert result.returncode == 0, result.stderr
    return result.stdout


def make_certificate(
    directory: Path,
    name: str,
    *,
    key_size: int = 2048,
    hash_algorithm: hashes.HashAlgorithm | None = None,
    not_after: dt.timedelta = dt.timedelta(days=365),
) -> tuple[Path, Path, x509.Certificate]:
    """A self-signed certificate and its key as PEM files (key, cert, certificate)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + not_after)
        .sign(key, hash_algorithm or hashes.SHA256())
    )
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


def certificate_b64(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


def with_certificate(metadata: str, certificate: x509.Certificate) -> str:
    """``metadata`` with every X509Certificate replaced by ``certificate``."""
    return re.sub(
        r"(<ns\d:X509Certificate>)[^<]*(</ns\d:X509Certificate>)",
        lambda match: match.group(1) + certificate_b64(certificate) + match.group(2),
        metadata,
    )


def with_entity_id(metadata: str, entity_id: str, acs_host: str | None = None) -> str:
    """``metadata`` renamed to ``entity_id`` (and its endpoints moved to ``acs_host``)."""
    old = re.search(r'entityID="([^"]+)"', metadata)
    assert old is not None
    renamed = metadata.replace(old.group(0), f'entityID="{entity_id}"')
    if acs_host:
        renamed = renamed.replace("https://localhost:8445/", f"https://{acs_host}/")
    return renamed

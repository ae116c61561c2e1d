"""Helpers for metadata tests: the demo SP's metadata, certificates made to order, variants."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.helpers.support import VENV_BIN, run_cli


def demo_sp_metadata(pki_dir: Path) -> str:
    """What `sp-demo metadata` writes (the real command), with the keys of ``pki_dir``."""
    result = run_cli([str(VENV_BIN / "sp-demo"), "metadata"], {"SP_DEMO_PKI_DIR": str(pki_dir)})
    assert result.returncode == 0, result.stderr
    return result.stdout


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

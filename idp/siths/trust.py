"""The SITHS trust configuration: which roots are anchors and which issuing CAs cards use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509


@dataclass(frozen=True)
class SithsTrust:
    """Trust anchors (roots) and the issuing CAs offered as intermediates for path building.

    The intermediates are not trusted by themselves: a path must still end at an anchor.
    """

    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]


def load_siths_trust(anchors_file: Path, intermediates_file: Path | None) -> SithsTrust:
    """Load PEM bundles; raise ``ValueError`` if there is no anchor."""
    anchors = tuple(x509.load_pem_x509_certificates(anchors_file.read_bytes()))
    intermediates: tuple[x509.Certificate, ...] = ()
    if intermediates_file is not None and intermediates_file.exists():
        intermediates = tuple(x509.load_pem_x509_certificates(intermediates_file.read_bytes()))
    if not anchors:
        raise ValueError(f"no trust anchor in {anchors_file}")
    return SithsTrust(anchors=anchors, intermediates=intermediates)

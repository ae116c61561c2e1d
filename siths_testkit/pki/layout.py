"""The on-disk layout of the test PKI and its manifest.

The relative paths below are fixed: the IdP's configuration derives its default file locations
from them (``siths/trust-anchors.pem``, ``idp/saml-signing.key.pem``, ``tls/server.crt.pem``…),
so changing one here means changing it there too. ``manifest.json`` records every path in
:class:`~siths_testkit.pki.model.TestPki` relative to the PKI directory, which keeps a PKI directory
movable; it is written last, so its presence means the PKI is complete.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from siths_testkit.pki.model import CARD_KINDS, CardFiles, TestPki

__all__ = [
    "BAD_CARDS_DIR",
    "CARDS_DIR",
    "FILES",
    "MANIFEST",
    "card_paths",
    "load_test_pki",
    "pki_paths",
    "write_manifest",
]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "atkomsttjansten-test-pki"
MANIFEST_VERSION = 1

CARDS_DIR = "cards"
BAD_CARDS_DIR = "cards/bad"

# TestPki field → path relative to the PKI directory.
FILES: Mapping[str, str] = MappingProxyType(
    {
        "root_ca_cert": "siths/root-ca.crt.pem",
        "root_ca_key": "siths/root-ca.key.pem",
        "hsa_ca_cert": "siths/hsa-id-ca.crt.pem",
        "hsa_ca_key": "siths/hsa-id-ca.key.pem",
        "person_id_ca_cert": "siths/person-id-ca.crt.pem",
        "person_id_ca_key": "siths/person-id-ca.key.pem",
        "trust_anchors_file": "siths/trust-anchors.pem",
        "intermediates_file": "siths/intermediates.pem",
        "forged_root_ca_cert": "forged/root-ca.crt.pem",
        "forged_root_ca_key": "forged/root-ca.key.pem",
        "forged_hsa_ca_cert": "forged/hsa-id-ca.crt.pem",
        "forged_hsa_ca_key": "forged/hsa-id-ca.key.pem",
        "tls_ca_cert": "tls/ca.crt.pem",
        "tls_ca_key": "tls/ca.key.pem",
        "tls_server_cert": "tls/server.crt.pem",
        "tls_server_key": "tls/server.key.pem",
        "idp_signing_cert": "idp/saml-signing.crt.pem",
        "idp_signing_key": "idp/saml-signing.key.pem",
        "idp_next_signing_cert": "idp/saml-signing-next.crt.pem",
        "idp_next_signing_key": "idp/saml-signing-next.key.pem",
        "sp_signing_cert": "sp/treserva.crt.pem",
        "sp_signing_key": "sp/treserva.key.pem",
    }
)

_CARD_PATH_FIELDS = ("cert", "key", "p12")


def pki_paths(directory: Path) -> dict[str, Path]:
    """Every fixed file of a PKI in ``directory``, keyed by its :class:`TestPki` field name."""
    return {name: directory / relative for name, relative in FILES.items()}


def card_paths(out_dir: Path, stem: str) -> tuple[Path, Path, Path]:
    """``(<stem>.crt.pem, <stem>.key.pem, <stem>.p12)`` in ``out_dir``."""
    return out_dir / f"{stem}.crt.pem", out_dir / f"{stem}.key.pem", out_dir / f"{stem}.p12"


def _relative(path: Path, directory: Path) -> str:
    # Stored with forward slashes whatever the platform, so a manifest is portable.
    return PurePosixPath(path.relative_to(directory)).as_posix()


def write_manifest(
    pki: TestPki,
    *,
    base_url_hosts: Sequence[str],
    created: dt.datetime,
    revocation_url: str = "",
) -> Path:
    """Write ``manifest.json`` for ``pki`` atomically and return its path.

    Every path must lie below ``pki.directory`` (``ValueError`` otherwise). ``revocation_url``
    is recorded as ``revocation_url`` (read by :func:`siths_testkit.pki.revocation.published_url`).
    """
    cards: dict[str, dict[str, Any]] = {}
    for name, card in pki.cards.items():
        entry = asdict(card)
        for key in _CARD_PATH_FIELDS:
            entry[key] = _relative(getattr(card, key), pki.directory)
        del entry["name"]
        cards[name] = entry
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "note": "TEST PKI: invented people, throw-away keys. Never trust it in production.",
        "created": created.isoformat(),
        "base_url_hosts": list(base_url_hosts),
        "revocation_url": revocation_url,
        "files": {name: _relative(getattr(pki, name), pki.directory) for name in FILES},
        "cards": cards,
    }
    path = pki.directory / MANIFEST
    temporary = path.with_name(f".{MANIFEST}.tmp")
    temporary.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", "utf-8")
    # Rename is atomic: a reader sees either no manifest or a complete one.
    os.replace(temporary, path)
    return path


def load_test_pki(directory: Path) -> TestPki:
    """Load the PKI whose ``manifest.json`` is in ``directory``.

    Raises ``FileNotFoundError`` if there is no manifest (the PKI was never initialised, or
    initialisation did not finish) and ``ValueError`` if the manifest is not one this code
    wrote. Files are not opened: paths are returned as recorded.
    """
    path = directory / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"no test PKI in {directory} ({MANIFEST} is missing); "
            f"create one with `idp pki init --dir {directory}`"
        )
    try:
        manifest = json.loads(path.read_text("utf-8"))
        if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != MANIFEST_VERSION:
            raise ValueError(
                f"unsupported manifest format {manifest.get('format')!r}"
                f" version {manifest.get('version')!r}"
            )
        files = {name: directory / manifest["files"][name] for name in FILES}
        cards = {
            name: _load_card(directory, name, entry) for name, entry in manifest["cards"].items()
        }
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a valid test PKI manifest: {exc!r}") from exc
    except ValueError as exc:
        raise ValueError(f"{path} is not a valid test PKI manifest: {exc}") from exc
    return TestPki(directory=directory, cards=cards, **files)


def _load_card(directory: Path, name: str, entry: Mapping[str, Any]) -> CardFiles:
    if entry["kind"] not in CARD_KINDS:
        raise ValueError(f"card {name!r} has unknown kind {entry['kind']!r}")
    return CardFiles(
        name=name,
        hsa_id=entry["hsa_id"],
        given_name=entry["given_name"],
        surname=entry["surname"],
        cert=directory / entry["cert"],
        key=directory / entry["key"],
        p12=directory / entry["p12"],
        kind=entry["kind"],
        extra_certs=list(entry.get("extra_certs", [])),
    )

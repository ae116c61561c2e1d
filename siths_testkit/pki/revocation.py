"""Revocation publishing of the test PKI: where cards point, which cards are revoked, CRLs.

A real SITHS CA publishes the status of every card it issued, by OCSP and by CRL. The test PKI
does the same, so the IdP's revocation checking runs against the real thing:

- every card carries the authority information access ``{url}/ocsp`` and the CRL distribution
  point ``{url}/crl/hsa-id-ca.crl``, where ``url`` is the PKI's *revocation base URL* (chosen at
  ``init_test_pki``, stored in ``manifest.json`` as ``revocation_url``);
- a delegated OCSP responder certificate issued by the HSA-id CA with id-kp-OCSPSigning and
  id-pkix-ocsp-nocheck signs the answers (see :mod:`siths_testkit.pki.ocsp_responder`);
- ``revocation/issued.jsonl`` lists every card certificate issued from the HSA-id CA, so a
  card can be revoked by its HSA-ID; ``revocation/revoked.json`` is the registry of revoked
  serials, which the responder re-reads whenever it changes;
- ``crl/hsa-id-ca.crl`` and ``crl/person-id-ca.crl`` are the CRLs (DER), rewritten on every
  revocation and by ``idp pki crl``.

Also here, for the IdP's rejection tests, a responder certificate from the same CA *without*
id-kp-OCSPSigning. A PKI created before revocation was published has none of this:
:func:`published_url` is then empty and cards are issued without the two extensions.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from siths_testkit.pki.issue import Issuer, _aki, _builder, _ski, add_years, key_usage
from siths_testkit.pki.layout import MANIFEST
from siths_testkit.pki.model import TestPki
from siths_testkit.pki.names import ca_name
from siths_testkit.pki.storage import (
    load_certificate,
    load_private_key,
    write_certificates,
    write_private_key,
)

__all__ = [
    "DEFAULT_REVOCATION_URL",
    "REASONS",
    "IssuedRecord",
    "RevocationFiles",
    "RevocationPointers",
    "RevokedEntry",
    "build_crl",
    "create_revocation_material",
    "crl_name_of",
    "find_issued",
    "issued_by",
    "load_registry",
    "ocsp_responder_certificate",
    "pointers_for",
    "published_url",
    "record_issued",
    "revocation_extensions",
    "revocation_files",
    "revoke",
    "write_crls",
]

# Loopback, so a demo machine never asks the network; a port nothing else of ours uses.
DEFAULT_REVOCATION_URL = "http://127.0.0.1:8480"

OCSP_RESPONDER_COMMON_NAME = "SITHS e-id Person HSA-id 3 CA v1 TEST OCSP responder"
NO_EKU_RESPONDER_COMMON_NAME = "SITHS e-id Person HSA-id 3 CA v1 TEST OCSP responder (no EKU)"

# What an operator may give as the reason (RFC 5280 names). removeFromCRL only undoes a hold,
# so it is not a reason to revoke.
REASONS: tuple[str, ...] = tuple(
    flag.value for flag in x509.ReasonFlags if flag is not x509.ReasonFlags.remove_from_crl
)

# The responder certificate lives as long as a card; nocheck means nobody checks its status,
# which is only acceptable for a certificate that expires in reasonable time.
_RESPONDER_YEARS = 2
_BACKDATE = dt.timedelta(hours=1)
_REVOCATION_DIR = "revocation"
_CRL_DIR = "crl"


@dataclass(frozen=True)
class RevocationPointers:
    """The two URLs a card carries; an empty string means "leave that extension out"."""

    ocsp_url: str = ""
    crl_url: str = ""

    @classmethod
    def for_base_url(cls, base_url: str) -> RevocationPointers:
        """``{base}/ocsp`` and ``{base}/crl/hsa-id-ca.crl``; nothing for an empty base."""
        if not base_url:
            return cls()
        base = base_url.rstrip("/")
        return cls(ocsp_url=f"{base}/ocsp", crl_url=f"{base}/crl/hsa-id-ca.crl")


@dataclass(frozen=True)
class RevocationFiles:
    """Where the revocation material of a PKI in ``directory`` lives (fixed relative paths)."""

    directory: Path

    @property
    def responder_cert(self) -> Path:
        return self.directory / _REVOCATION_DIR / "ocsp-responder.crt.pem"

    @property
    def responder_key(self) -> Path:
        return self.directory / _REVOCATION_DIR / "ocsp-responder.key.pem"

    @property
    def no_eku_responder_cert(self) -> Path:
        return self.directory / _REVOCATION_DIR / "no-eku-responder.crt.pem"

    @property
    def no_eku_responder_key(self) -> Path:
        return self.directory / _REVOCATION_DIR / "no-eku-responder.key.pem"

    @property
    def issued(self) -> Path:
        return self.directory / _REVOCATION_DIR / "issued.jsonl"

    @property
    def registry(self) -> Path:
        return self.directory / _REVOCATION_DIR / "revoked.json"

    @property
    def lock(self) -> Path:
        return self.directory / _REVOCATION_DIR / ".lock"

    @property
    def crl_dir(self) -> Path:
        return self.directory / _CRL_DIR


def revocation_files(directory: Path) -> RevocationFiles:
    return RevocationFiles(directory)


def published_url(directory: Path) -> str:
    """The PKI's revocation base URL from its manifest; ``""`` if it publishes none (or has no
    manifest yet)."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text("utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return ""
    url = manifest.get("revocation_url", "") if isinstance(manifest, dict) else ""
    return url if isinstance(url, str) else ""


def pointers_for(
    directory: Path, *, ocsp_url: str | None = None, crl_url: str | None = None
) -> RevocationPointers:
    """The pointers for a card from the PKI in ``directory``: each URL given wins (``""`` leaves
    that extension out), each ``None`` becomes the PKI's own (see :func:`published_url`)."""
    published = RevocationPointers.for_base_url(published_url(directory))
    return RevocationPointers(
        ocsp_url=published.ocsp_url if ocsp_url is None else ocsp_url,
        crl_url=published.crl_url if crl_url is None else crl_url,
    )


def revocation_extensions(pointers: RevocationPointers) -> list[x509.ExtensionType]:
    """The AIA (OCSP) and CRL distribution point extensions for ``pointers``.

    Each is left out when its URL is empty; both are meant to be added non-critical.
    """
    extensions: list[x509.ExtensionType] = []
    if pointers.ocsp_url:
        extensions.append(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier(pointers.ocsp_url),
                    )
                ]
            )
        )
    if pointers.crl_url:
        extensions.append(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(pointers.crl_url)],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            )
        )
    return extensions


def ocsp_responder_certificate(
    key: RSAPrivateKey,
    name: x509.Name,
    issuer: Issuer,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    ocsp_signing: bool = True,
) -> x509.Certificate:
    """A delegated OCSP responder certificate (RFC 6960 §4.2.2.2) issued by ``issuer``.

    basicConstraints CA=false, keyUsage digitalSignature (critical), EKU id-kp-OCSPSigning,
    id-pkix-ocsp-nocheck (relying parties need not ask about the responder itself), SKI, AKI.
    ``ocsp_signing=False`` leaves the EKU out: a certificate from the right CA that must *not*
    be believed as a responder.
    """
    builder = _builder(name, issuer.certificate.subject, key, not_before, not_after)
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True), critical=True)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(_ski(key), critical=False)
        .add_extension(_aki(issuer), critical=False)
    )
    if ocsp_signing:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
        )
    return builder.sign(issuer.key, hashes.SHA256())


def create_revocation_material(
    directory: Path,
    hsa_ca: Issuer,
    person_id_ca: Issuer,
    take_key: Callable[[], RSAPrivateKey],
    now: dt.datetime,
) -> RevocationFiles:
    """Write the responder certificates, an empty registry and the first CRLs.

    Part of ``init_test_pki``; takes two keys from ``take_key``.
    """
    files = revocation_files(directory)
    for cert_path, key_path, common_name, ocsp_signing in (
        (files.responder_cert, files.responder_key, OCSP_RESPONDER_COMMON_NAME, True),
        (
            files.no_eku_responder_cert,
            files.no_eku_responder_key,
            NO_EKU_RESPONDER_COMMON_NAME,
            False,
        ),
    ):
        key = take_key()
        certificate = ocsp_responder_certificate(
            key,
            ca_name(common_name),
            hsa_ca,
            not_before=now - _BACKDATE,
            not_after=add_years(now, _RESPONDER_YEARS),
            ocsp_signing=ocsp_signing,
        )
        write_private_key(key_path, key)
        write_certificates(cert_path, [certificate])
    _write_registry(files, [])
    files.issued.touch()
    _write_crl_files(files, (hsa_ca, person_id_ca), [], now, dt.timedelta(days=1))
    return files


# --- what was issued -------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedRecord:
    """One card certificate issued from the HSA-id CA, as ``issued.jsonl`` records it."""

    serial: int
    hsa_id: str
    name: str
    not_after: dt.datetime
    certificate_file: str


def _hsa_id_of(certificate: x509.Certificate) -> str:
    values = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return str(values[0].value) if values else ""


def _common_name_of(certificate: x509.Certificate) -> str:
    values = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def record_issued(directory: Path, issued: Iterable[tuple[x509.Certificate, Path | None]]) -> None:
    """Append ``(certificate, file it was written to or None)`` pairs to ``issued.jsonl``.

    One ``O_APPEND`` write per call, so concurrent issuers never interleave half lines.
    """
    lines = [
        json.dumps(
            {
                "serial": f"{certificate.serial_number:x}",
                "hsa_id": _hsa_id_of(certificate),
                "name": _common_name_of(certificate),
                "not_after": certificate.not_valid_after_utc.isoformat(),
                "certificate_file": str(path) if path is not None else "",
            },
            ensure_ascii=False,
        )
        + "\n"
        for certificate, path in issued
    ]
    if not lines:
        return
    path = revocation_files(directory).issued
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, "".join(lines).encode("utf-8"))
    finally:
        os.close(fd)


def find_issued(directory: Path, hsa_id: str, now: dt.datetime) -> list[IssuedRecord]:
    """The unexpired certificates with ``hsa_id`` that this PKI issued, oldest first."""
    path = revocation_files(directory).issued
    if not path.is_file():
        return []
    found: list[IssuedRecord] = []
    for line in path.read_text("utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        record = IssuedRecord(
            serial=int(entry["serial"], 16),
            hsa_id=entry["hsa_id"],
            name=entry["name"],
            not_after=dt.datetime.fromisoformat(entry["not_after"]),
            certificate_file=entry["certificate_file"],
        )
        if record.hsa_id == hsa_id and record.not_after > now:
            found.append(record)
    return found


# --- the registry of revoked certificates -----------------------------------------------------


@dataclass(frozen=True)
class RevokedEntry:
    """One revoked certificate: by ``issuer`` (RFC 4514 DN) and ``serial``."""

    issuer: str
    serial: int
    reason: x509.ReasonFlags
    revoked_at: dt.datetime
    hsa_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "serial": f"{self.serial:x}",
            "reason": self.reason.value,
            "revoked_at": self.revoked_at.isoformat(),
            "hsa_id": self.hsa_id,
        }

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> RevokedEntry:
        return cls(
            issuer=entry["issuer"],
            serial=int(entry["serial"], 16),
            reason=x509.ReasonFlags(entry["reason"]),
            revoked_at=dt.datetime.fromisoformat(entry["revoked_at"]),
            hsa_id=entry.get("hsa_id", ""),
        )


def load_registry(directory: Path) -> list[RevokedEntry]:
    """Every revoked certificate; empty for a PKI without a registry."""
    path = revocation_files(directory).registry
    if not path.is_file():
        return []
    data = json.loads(path.read_text("utf-8"))
    return [RevokedEntry.from_json(entry) for entry in data["revoked"]]


def _write_registry(files: RevocationFiles, entries: Sequence[RevokedEntry]) -> None:
    files.registry.parent.mkdir(parents=True, exist_ok=True)
    temporary = files.registry.with_name(f".{files.registry.name}.tmp")
    document = {
        "note": "TEST PKI revocation registry; `idp card revoke` adds to it.",
        "revoked": [entry.to_json() for entry in entries],
    }
    temporary.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")
    # Atomic rename: the responder, reading without the lock, sees the old or the new list.
    os.replace(temporary, files.registry)


@contextmanager
def _locked(files: RevocationFiles) -> Iterator[None]:
    files.lock.parent.mkdir(parents=True, exist_ok=True)
    with open(files.lock, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def revoke(
    pki: TestPki,
    certificates: Iterable[tuple[int, str]],
    reason: x509.ReasonFlags,
    now: dt.datetime,
) -> list[RevokedEntry]:
    """Revoke ``(serial, hsa_id)`` certificates of the HSA-id CA; return the new entries.

    A serial already revoked keeps its first entry (revocation is final), so the result may be
    shorter than the input. The registry and the CRL files are rewritten under a lock; the
    responder sees the change at its next request.
    """
    if reason is x509.ReasonFlags.remove_from_crl:
        raise ValueError("removeFromCRL is not a reason to revoke")
    files = revocation_files(pki.directory)
    issuer = _load_issuer(pki.hsa_ca_cert, pki.hsa_ca_key)
    issuer_dn = issuer.certificate.subject.rfc4514_string()
    with _locked(files):
        entries = load_registry(pki.directory)
        known = {(entry.issuer, entry.serial) for entry in entries}
        added: list[RevokedEntry] = []
        for serial, hsa_id in certificates:
            if (issuer_dn, serial) in known:
                continue
            known.add((issuer_dn, serial))
            added.append(
                RevokedEntry(issuer_dn, serial, reason, now.replace(microsecond=0), hsa_id)
            )
        if added:
            entries.extend(added)
            _write_registry(files, entries)
            person_id_ca = _load_issuer(pki.person_id_ca_cert, pki.person_id_ca_key)
            _write_crl_files(files, (issuer, person_id_ca), entries, now, dt.timedelta(days=1))
    return added


def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True if ``issuer``'s key signed ``certificate`` (names alone prove nothing)."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# --- CRLs ------------------------------------------------------------------------------------


def crl_name_of(certificate: x509.Certificate) -> str:
    """The file name of a CA's CRL: ``hsa-id-ca.crl`` for "…HSA-id…", ``person-id-ca.crl``."""
    common_name = _common_name_of(certificate)
    return "hsa-id-ca.crl" if "HSA-id" in common_name else "person-id-ca.crl"


def build_crl(
    issuer: Issuer,
    entries: Iterable[RevokedEntry],
    *,
    this_update: dt.datetime,
    next_update: dt.datetime,
    signing_key: RSAPrivateKey | None = None,
) -> x509.CertificateRevocationList:
    """A CRL of ``issuer`` listing the ``entries`` that are its own.

    Carries AKI and a CRL number (milliseconds since the epoch: increasing, as RFC 5280 wants);
    a reason code unless the reason is ``unspecified`` (RFC 5280 says to leave that out).
    ``signing_key`` signs instead of the issuer's key: only for a deliberately bad CRL.
    """
    issuer_dn = issuer.certificate.subject.rfc4514_string()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(_aki(issuer), critical=False)
        .add_extension(x509.CRLNumber(int(this_update.timestamp() * 1000)), critical=False)
    )
    for entry in entries:
        if entry.issuer != issuer_dn:
            continue
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
        )
        if entry.reason is not x509.ReasonFlags.unspecified:
            revoked = revoked.add_extension(x509.CRLReason(entry.reason), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(signing_key or issuer.key, hashes.SHA256())


def _write_crl_files(
    files: RevocationFiles,
    issuers: Iterable[Issuer],
    entries: Sequence[RevokedEntry],
    now: dt.datetime,
    validity: dt.timedelta,
) -> list[Path]:
    files.crl_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for issuer in issuers:
        crl = build_crl(issuer, entries, this_update=now, next_update=now + validity)
        path = files.crl_dir / crl_name_of(issuer.certificate)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(crl.public_bytes(Encoding.DER))
        os.replace(temporary, path)
        written.append(path)
    return written


def write_crls(pki: TestPki, *, validity: dt.timedelta, now: dt.datetime) -> list[Path]:
    """Write both issuing CAs' CRLs (DER) to ``crl/`` from the registry; return the paths."""
    files = revocation_files(pki.directory)
    issuers = (
        _load_issuer(pki.hsa_ca_cert, pki.hsa_ca_key),
        _load_issuer(pki.person_id_ca_cert, pki.person_id_ca_key),
    )
    with _locked(files):
        return _write_crl_files(files, issuers, load_registry(pki.directory), now, validity)


def _load_issuer(cert: Path, key: Path) -> Issuer:
    # Not siths_testkit.pki.cards.load_issuer: cards imports this module.
    return Issuer(load_certificate(cert), load_private_key(key))

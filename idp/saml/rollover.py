"""The IdP's SAML signing key rollover: which key signs, and which is published beside it.

State lives in ``<var_dir>/saml-signing-keys.json`` (written atomically). Without the file the
configured ``saml_signing_key``/``saml_signing_cert`` sign and nothing else is published.

A rollover has two steps, with at least one metadata cache period between them so every SP has
fetched metadata naming both keys before responses are signed with the new one:

1. :func:`start_rollover` — the next key is published in the IdP's metadata; signing is unchanged.
2. :func:`finish_rollover` — the next key signs; the old one is retired (no longer published).

Running IdP processes notice a change through :func:`state_stamp` and rebuild their server.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from idp.config import Settings

STATE_FILE = "saml-signing-keys.json"


class RolloverError(Exception):
    """The requested step does not fit the current state (e.g. finishing an unstarted rollover)."""


@dataclass(frozen=True)
class SigningKeys:
    """The key and certificate that sign now, and the certificate published beside it."""

    key_file: Path
    cert_file: Path
    next_key_file: Path | None = None
    next_cert_file: Path | None = None
    started_at: dt.datetime | None = None

    @property
    def in_rollover(self) -> bool:
        return self.next_cert_file is not None


def state_path(settings: Settings) -> Path:
    return settings.var_dir / STATE_FILE


def state_stamp(settings: Settings) -> tuple[int, int] | None:
    """(mtime_ns, size) of the state file, None without one: changes whenever the state does."""
    try:
        stat = state_path(settings).stat()
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


def signing_keys(settings: Settings) -> SigningKeys:
    """The current signing keys (the configured ones unless a rollover state says otherwise)."""
    try:
        state = json.loads(state_path(settings).read_text("utf-8"))
    except FileNotFoundError:
        return SigningKeys(settings.saml_signing_key, settings.saml_signing_cert)
    nxt = state.get("next") or {}
    started = state.get("started_at")
    return SigningKeys(
        key_file=Path(state["current"]["key"]),
        cert_file=Path(state["current"]["cert"]),
        next_key_file=Path(nxt["key"]) if nxt else None,
        next_cert_file=Path(nxt["cert"]) if nxt else None,
        started_at=dt.datetime.fromisoformat(started) if started and nxt else None,
    )


def _write_state(settings: Settings, state: dict[str, object]) -> None:
    path = state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{STATE_FILE}.tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n", "utf-8")
    os.replace(temporary, path)


def generate_signing_key(directory: Path, common_name: str) -> tuple[Path, Path]:
    """A new RSA-3072 key and a self-signed certificate (SAML metadata pins keys, not chains)."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3 * 365))
        .sign(key, hashes.SHA256())
    )
    key_path = directory / f"saml-signing-{stamp}.key.pem"
    cert_path = directory / f"saml-signing-{stamp}.crt.pem"
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def start_rollover(
    settings: Settings, key_file: Path | None = None, cert_file: Path | None = None
) -> SigningKeys:
    """Publish the next key. Without ``key_file``: the PKI's ``idp/saml-signing-next.*`` if it
    exists, else a newly generated key under ``<var_dir>/saml-keys``. Raises RolloverError if a
    rollover is already under way or the next key is the current one."""
    current = signing_keys(settings)
    if current.in_rollover:
        raise RolloverError(f"a rollover is already under way (next: {current.next_cert_file})")
    if key_file is None or cert_file is None:
        default_key = settings.pki_dir / "idp" / "saml-signing-next.key.pem"
        default_cert = settings.pki_dir / "idp" / "saml-signing-next.crt.pem"
        if default_key.is_file() and default_cert.is_file():
            key_file, cert_file = default_key, default_cert
        else:
            key_file, cert_file = generate_signing_key(
                settings.var_dir / "saml-keys", "Åtkomsttjänsten SAML signing"
            )
    if key_file.resolve() == current.key_file.resolve():
        raise RolloverError("the next key is the one signing now; give a new --key/--cert")
    certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    public_der = serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(
        serialization.Encoding.DER, public_der
    ) != certificate.public_key().public_bytes(serialization.Encoding.DER, public_der):
        raise RolloverError(f"{cert_file} does not certify the key in {key_file}")
    _write_state(
        settings,
        {
            "current": {"key": str(current.key_file), "cert": str(current.cert_file)},
            "next": {"key": str(key_file.resolve()), "cert": str(cert_file.resolve())},
            "started_at": dt.datetime.now(dt.UTC).isoformat(),
        },
    )
    return signing_keys(settings)


def finish_rollover(settings: Settings, min_wait: dt.timedelta = dt.timedelta(0)) -> SigningKeys:
    """Sign with the next key and stop publishing the old one.

    Raises RolloverError without a rollover under way, or if it started less than ``min_wait``
    ago (SPs may not have fetched the metadata naming the next key yet).
    """
    current = signing_keys(settings)
    if not current.in_rollover:
        raise RolloverError("no rollover under way: run `idp keys rollover start` first")
    assert current.next_key_file is not None and current.next_cert_file is not None
    if current.started_at and dt.datetime.now(dt.UTC) - current.started_at < min_wait:
        raise RolloverError(
            f"the rollover started at {current.started_at:%Y-%m-%d %H:%M:%S} UTC; SPs that "
            f"cache metadata for {min_wait} may not know the next key yet"
        )
    _write_state(
        settings,
        {
            "current": {"key": str(current.next_key_file), "cert": str(current.next_cert_file)},
            "next": None,
            "retired": {"cert": str(current.cert_file)},
            "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        },
    )
    return signing_keys(settings)

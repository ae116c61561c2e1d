"""The provider's signing keys: generated on first start, kept on disk, rolled over on command.

Layout of ``keys_dir`` (under ``var/``, never in the repository)::

    keys.json          which key is which: [{"kid", "alg", "state", "created"}]
    <kid>.key.pem      one private key (PKCS#8, mode 0600)

For each algorithm (RS256, ES256) there is one ``current`` key, which signs, and one ``next``
key, which is published in the JWKS but signs nothing yet. ``idp oidc keys rotate`` makes the
next key current, the current key ``retired`` (still published, so tokens it signed still
verify) and generates a new next key; keys retired by the rotation before are deleted. A
relying party that caches the JWKS therefore always knows a key before it is used.

A running IdP notices a rotation by the manifest's modification time (checked at most every
``key_check_interval_seconds``), so every node sharing the directory follows without restart.
Private keys are loaded once per change, never per request, and never logged.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import ECKey, Key, KeySet, RSAKey

MANIFEST = "keys.json"
ALGORITHMS = ("RS256", "ES256")
CURRENT, NEXT, RETIRED = "current", "next", "retired"

SigningKey = RSAKey | ECKey


@dataclass(frozen=True)
class KeyInfo:
    """One entry of the manifest."""

    kid: str
    alg: str
    state: str
    created: str


class KeyStoreError(RuntimeError):
    """The key directory is missing a key it promises, or cannot be written."""


@dataclass(frozen=True)
class _Snapshot:
    signing: dict[str, SigningKey]
    jwks: dict[str, Any]
    stamp: tuple[int, int, int]


class KeyRing:
    """The keys one IdP process signs with and publishes.

    Callers rely on: :meth:`signing_key` returns the ``current`` key of an algorithm (with its
    ``kid`` set); :meth:`public_jwks` holds every current, next and retired key, public parts
    only. Both read an immutable snapshot, so they are safe from any thread.
    """

    def __init__(
        self, directory: Path, *, rsa_key_size: int = 3072, check_interval: float = 1.0
    ) -> None:
        self.directory = directory
        self._rsa_key_size = rsa_key_size
        self._check_interval = check_interval
        self._lock = threading.Lock()
        ensure_keys(directory, rsa_key_size=rsa_key_size)
        self._snapshot = _load(directory)
        self._checked_at = time.monotonic()

    def signing_key(self, alg: str) -> SigningKey:
        try:
            return self._snapshot.signing[alg]
        except KeyError:
            raise KeyStoreError(f"no current {alg} key") from None

    def public_jwks(self) -> dict[str, Any]:
        return self._snapshot.jwks

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(alg for alg in ALGORITHMS if alg in self._snapshot.signing)

    def refresh_if_changed(self) -> None:
        """Reload if ``idp oidc keys rotate`` changed the manifest. Blocking (a stat, and on a
        change the key files): call it from a worker thread."""
        now = time.monotonic()
        if now - self._checked_at < self._check_interval:
            return
        with self._lock:
            self._checked_at = now
            if _stamp(self.directory) != self._snapshot.stamp:
                self._snapshot = _load(self.directory)


def ensure_keys(directory: Path, *, rsa_key_size: int = 3072) -> None:
    """Create a current and a next key for every algorithm that lacks them (first start)."""
    with _locked(directory):
        manifest = _read_manifest(directory)
        changed = False
        for alg in ALGORITHMS:
            for state in (CURRENT, NEXT):
                if not any(k.alg == alg and k.state == state for k in manifest):
                    manifest.append(_generate(directory, alg, state, rsa_key_size))
                    changed = True
        if changed:
            _write_manifest(directory, manifest)


def rotate_keys(
    directory: Path, algorithms: Sequence[str] = ALGORITHMS, *, rsa_key_size: int = 3072
) -> list[KeyInfo]:
    """Roll the keys of ``algorithms`` over: next → current → retired, plus a new next key.

    Returns the new manifest. Keys that were already retired are deleted.
    """
    ensure_keys(directory, rsa_key_size=rsa_key_size)
    with _locked(directory):
        kept: list[KeyInfo] = []
        dropped: list[KeyInfo] = []
        for info in _read_manifest(directory):
            if info.alg not in algorithms:
                kept.append(info)
            elif info.state == RETIRED:
                dropped.append(info)
            else:
                promoted = RETIRED if info.state == CURRENT else CURRENT
                kept.append(KeyInfo(info.kid, info.alg, promoted, info.created))
        for alg in algorithms:
            kept.append(_generate(directory, alg, NEXT, rsa_key_size))
        _write_manifest(directory, kept)
        # Only once no manifest names them: a private key no longer used is not kept around.
        for info in dropped:
            (directory / f"{info.kid}.key.pem").unlink(missing_ok=True)
        return kept


def describe_keys(directory: Path) -> list[KeyInfo]:
    """The manifest, for ``idp oidc keys list``."""
    return _read_manifest(directory)


# --- on disk -----------------------------------------------------------------------------------


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # Two nodes starting at once, or a rotation during start-up, must not both write.
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


def _read_manifest(directory: Path) -> list[KeyInfo]:
    path = directory / MANIFEST
    if not path.exists():
        return []
    return [KeyInfo(**entry) for entry in json.loads(path.read_text(encoding="utf-8"))]


def _write_manifest(directory: Path, manifest: list[KeyInfo]) -> None:
    temporary = directory / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps([asdict(k) for k in manifest], indent=2), encoding="utf-8")
    os.replace(temporary, directory / MANIFEST)


def _stamp(directory: Path) -> tuple[int, int, int]:
    status = (directory / MANIFEST).stat()
    return status.st_ino, status.st_mtime_ns, status.st_size


def _generate(directory: Path, alg: str, state: str, rsa_key_size: int) -> KeyInfo:
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_key_size)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        raise KeyStoreError(f"unsupported algorithm {alg}")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    kid = _import(pem, alg, "").thumbprint()
    descriptor = os.open(directory / f"{kid}.key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return KeyInfo(kid=kid, alg=alg, state=state, created=created)


def _import(pem: bytes, alg: str, kid: str) -> SigningKey:
    parameters: dict[str, Any] = {"alg": alg, "use": "sig"}
    if kid:
        parameters["kid"] = kid
    if alg == "RS256":
        return RSAKey.import_key(pem, parameters)  # type: ignore[arg-type]
    return ECKey.import_key(pem, parameters)  # type: ignore[arg-type]


def _load(directory: Path) -> _Snapshot:
    # Under the lock: a rotation deletes retired key files, so read a consistent pair.
    with _locked(directory):
        stamp = _stamp(directory)
        manifest = _read_manifest(directory)
        order = {CURRENT: 0, NEXT: 1, RETIRED: 2}
        signing: dict[str, SigningKey] = {}
        published: list[Key] = []
        for info in sorted(manifest, key=lambda entry: (order.get(entry.state, 3), entry.alg)):
            path = directory / f"{info.kid}.key.pem"
            if not path.exists():
                raise KeyStoreError(f"{path} is listed in {MANIFEST} but missing")
            key = _import(path.read_bytes(), info.alg, info.kid)
            published.append(key)
            if info.state == CURRENT:
                signing[info.alg] = key
    jwks = dict(KeySet(published).as_dict(private=False))
    return _Snapshot(signing=signing, jwks=jwks, stamp=stamp)

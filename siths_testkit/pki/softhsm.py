"""SoftHSM2 tokens through PKCS#11 (python-pkcs11): where they live and one safe way to use them.

A TEST card's private key lives on a SoftHSM2 token, as a real card's lives on the card's chip:
it is generated there, is sensitive and non-extractable, and only ever signs. Both the issuing
side (:mod:`siths_testkit.pki.tokens`) and the simulated app
(:mod:`siths_testkit.app_simulator.token`) reach the tokens through :func:`run_on_token` here.

Three facts about SoftHSM 2.6 (Debian's) shape this module:

- ``C_Initialize`` and ``C_Finalize`` change OpenSSL's process-wide state (its crypto factory
  sets up, and tears down, OpenSSL engines). Python's ``ssl`` module uses the same libcrypto,
  so a TLS connection that is open in the process at that moment fails on its next read
  ("[ENGINE: NO_SUCH_ENGINE]", "[PROV: BAD_DECRYPT]"). Seen here with httpx, every time.
- It reads its configuration (``SOFTHSM2_CONF`` → ``directories.tokendir``) and lists its tokens
  only in ``C_Initialize``: a token that ``softhsm2-util`` creates later is invisible until the
  library is finalised and initialised again.
- python-pkcs11 calls ``C_Initialize(NULL)``, which tells SoftHSM that nobody will call it from
  two threads at once, so SoftHSM switches its own locking off.

Hence PKCS#11 never runs in the calling process: every operation is sent to one worker process
(:mod:`siths_testkit.pki.pkcs11_worker`, started on first use, one request at a time), which owns
the library, re-initialises it whenever a token is missing or another configuration is asked for,
and opens a fresh logged-in session for each operation. Callers are safe from any thread.
The tokens always live in a directory we chose: a ``softhsm2.conf`` of ours, never the
system's default.
"""

from __future__ import annotations

import atexit
import os
import pickle
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_SOFTHSM_DIR",
    "SOFTHSM_MODULE",
    "PinLocked",
    "TokenError",
    "TokenNotFound",
    "WrongPin",
    "create_token",
    "module_path",
    "resolve_config",
    "run_on_token",
    "token_exists",
    "write_config",
]

# Debian's path (package softhsm2 → libsofthsm2); IDP_SOFTHSM_MODULE overrides it elsewhere.
SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
# Where tokens go when neither --softhsm-conf nor SOFTHSM2_CONF says otherwise (like var/pki).
DEFAULT_SOFTHSM_DIR = Path("var/softhsm")
CONFIG_NAME = "softhsm2.conf"
# PKCS#11 token labels are 32 bytes, blank-padded.
MAX_LABEL_BYTES = 32

Result = TypeVar("Result")


class TokenError(Exception):
    """Something about a token went wrong; the message says what, in words for a person."""


class TokenNotFound(TokenError):
    """No token with that label in the configured token directory."""


class WrongPin(TokenError):
    """The token refused the PIN, as a card does when the wrong code is typed."""


class PinLocked(TokenError):
    """The token has locked its user PIN after too many wrong tries."""


# --- configuration --------------------------------------------------------------------------


def write_config(directory: Path) -> Path:
    """Create ``directory/softhsm2.conf`` with its tokens in ``directory/tokens``; return it.

    An existing configuration file is left as it is (it may point elsewhere on purpose).
    """
    directory = directory.resolve()
    config = directory / CONFIG_NAME
    if not config.exists():
        tokens = directory / "tokens"
        tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
        config.write_text(
            "# SoftHSM2 configuration for TEST SITHS cards (idp card issue --token).\n"
            f"directories.tokendir = {tokens}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n",
            encoding="utf-8",
        )
    return config


def resolve_config(explicit: Path | None = None) -> Path:
    """The SoftHSM2 configuration to use: ``explicit``, else ``$SOFTHSM2_CONF``, else ours.

    "Ours" is ``var/softhsm/softhsm2.conf``, created on first use. An explicit directory, or
    an explicit ``…/softhsm2.conf`` that does not exist yet, is created the same way, with its
    tokens in a ``tokens`` folder beside it. The system-wide default is never picked silently.
    """
    if explicit is None and os.environ.get("SOFTHSM2_CONF"):
        explicit = Path(os.environ["SOFTHSM2_CONF"])
    if explicit is None:
        return write_config(DEFAULT_SOFTHSM_DIR)
    if explicit.is_dir():
        return write_config(explicit)
    if not explicit.exists():
        if explicit.name != CONFIG_NAME:
            raise TokenError(f"{explicit} does not exist (name a directory or a {CONFIG_NAME})")
        return write_config(explicit.parent)
    return explicit.resolve()


def _check_label(label: str) -> None:
    if not label or len(label.encode("utf-8")) > MAX_LABEL_BYTES:
        raise TokenError(f"a token label is 1 to {MAX_LABEL_BYTES} bytes, not {label!r}")


def module_path() -> Path:
    """The SoftHSM2 PKCS#11 module; ``TokenError`` (saying how to install it) if missing."""
    path = Path(os.environ.get("IDP_SOFTHSM_MODULE", str(SOFTHSM_MODULE)))
    if not path.exists():
        raise TokenError(
            f"the SoftHSM2 PKCS#11 module {path} is missing; install the Debian package "
            "softhsm2 (apt-get install softhsm2) or set IDP_SOFTHSM_MODULE"
        )
    return path


# --- the calling process's side -------------------------------------------------------------


class _Worker:
    """The PKCS#11 worker process and the pipe to it; one request at a time."""

    def __init__(self) -> None:
        # The worker must import this very code: put the directory holding ``siths_testkit`` first.
        source_root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(filter(None, [source_root, os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"from {WORKER_MODULE} import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
        )

    def call(self, module: str, name: str, args: tuple[Any, ...]) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        pickle.dump((module, name, args), self.process.stdin)
        self.process.stdin.flush()
        status, value = pickle.load(self.process.stdout)  # noqa: S301 (our own child)
        if status == "error":
            raise value
        return value

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # end of input: the worker returns
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


_WORKER_LOCK = threading.Lock()
_worker: _Worker | None = None


# The worker's module, named and never imported here: it imports this module (for the errors
# and module_path), and only the worker process loads python-pkcs11's library.
WORKER_MODULE = "siths_testkit.pki.pkcs11_worker"


def _in_worker(name: str, *args: Any) -> Any:
    """``WORKER_MODULE.name(*args)``, run in the worker process."""
    global _worker
    with _WORKER_LOCK:
        if _worker is None or _worker.process.poll() is not None:
            _worker = _Worker()
            atexit.register(_worker.stop)
        try:
            return _worker.call(WORKER_MODULE, name, args)
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            _worker.process.kill()
            _worker = None
            raise TokenError("the PKCS#11 worker process died; try again") from exc


def token_exists(config: Path, label: str) -> bool:
    """Whether the token directory of ``config`` holds a token labelled ``label``."""
    _check_label(label)
    exists: bool = _in_worker("token_exists", config, label)
    return exists


def create_token(config: Path, label: str, *, pin: str, so_pin: str) -> None:
    """Initialise a new token ``label`` in a free slot, with user ``pin`` and ``so_pin``.

    Uses ``softhsm2-util --init-token --free`` (python-pkcs11 cannot initialise a token).
    ``TokenError`` if a token with that label exists already or the tool refuses.
    """
    _check_label(label)
    for what, value in (("PIN", pin), ("SO PIN", so_pin)):
        if not 4 <= len(value) <= 255:
            raise TokenError(f"a SoftHSM2 {what} is 4 to 255 characters")
    if token_exists(config, label):
        raise TokenError(f"a token labelled {label!r} exists already")
    tool = shutil.which("softhsm2-util")
    if tool is None:
        raise TokenError("softhsm2-util is missing; install the Debian package softhsm2")
    result = subprocess.run(
        [tool, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
        env={**os.environ, "SOFTHSM2_CONF": str(config)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise TokenError(f"softhsm2-util could not create token {label!r}: {result.stderr}")


def run_on_token(
    config: Path,
    label: str,
    pin: str,
    operation: Callable[..., Result],
    *args: Any,
    rw: bool = False,
) -> Result:
    """Run ``operation(session, *args)`` in a fresh session on token ``label``, logged in.

    ``operation`` runs in the PKCS#11 worker process, so it must be a module-level function
    of an ``idp`` module named ``_on_token_…``, and its arguments and result must pickle
    (bytes, str, tuples…; never a PKCS#11 object). ``rw`` opens a read-write session (to
    create or change objects). Raises :class:`TokenNotFound`, :class:`WrongPin` or
    :class:`PinLocked`; other PKCS#11 failures come out as :class:`TokenError`; what
    ``operation`` raises otherwise comes out as it is.
    """
    _check_label(label)
    result: Result = _in_worker("run", config, label, pin, rw, operation, args)
    return result

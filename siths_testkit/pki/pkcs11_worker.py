"""The one process that loads SoftHSM2, started by :mod:`siths_testkit.pki.softhsm` (see
:func:`main`).

Started and spoken to by :mod:`siths_testkit.pki.softhsm` (read its docstring for why PKCS#11 must
not run in the caller's process). The protocol is private to the two: on stdin, a stream of pickled
requests ``(module, function name, args)``; on the original stdout, one pickled answer per request,
``("ok", result)`` or ``("error", exception)``. Requests are served one at a time, which is also
what SoftHSM needs (it runs without locks under python-pkcs11). The worker stops at end of input,
that is when its parent goes away. Only functions of ``siths_testkit`` modules whose names start
with ``_on_token_`` (or this module's own) are run.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pkcs11
from pkcs11 import exceptions as p11

from siths_testkit.pki.softhsm import PinLocked, TokenError, TokenNotFound, WrongPin, module_path

_library: Any = None
_library_config: Path | None = None


def _initialised_library(config: Path, *, rescan: bool) -> Any:
    global _library, _library_config
    if _library is not None and not rescan and _library_config == config:
        return _library
    # SoftHSM reads SOFTHSM2_CONF in C_Initialize: set it first, then (re-)initialise. The
    # first time too, since pkcs11.lib() caches one instance per module path.
    os.environ["SOFTHSM2_CONF"] = str(config)
    if _library is None:
        _library = pkcs11.lib(str(module_path()))
    _library.reinitialize()
    _library_config = config
    return _library


def _find_token(config: Path, label: str) -> Any:
    try:
        return _initialised_library(config, rescan=False).get_token(token_label=label)
    except p11.NoSuchToken:
        pass
    try:
        # Perhaps created by softhsm2-util since the library was initialised: look again, once.
        return _initialised_library(config, rescan=True).get_token(token_label=label)
    except p11.NoSuchToken:
        raise TokenNotFound(
            f"no token labelled {label!r} (SoftHSM2 configuration {config})"
        ) from None


def token_exists(config: Path, label: str) -> bool:
    try:
        _find_token(config, label)
    except TokenNotFound:
        return False
    return True


def run(
    config: Path,
    label: str,
    pin: str,
    rw: bool,
    operation: Callable[..., Any],
    args: tuple[Any, ...],
) -> Any:
    """``operation(session, *args)`` in a fresh logged-in session on token ``label``."""
    token = _find_token(config, label)
    try:
        session = token.open(user_pin=pin, rw=rw)
    except (p11.PinIncorrect, p11.PinLenRange, p11.PinInvalid):
        raise WrongPin(f"the PIN for card {label!r} is wrong") from None
    except p11.PinLocked:
        raise PinLocked(f"card {label!r} has locked its PIN after too many tries") from None
    except p11.PKCS11Error as exc:
        raise TokenError(f"could not open card {label!r}: {exc!r}") from None
    try:
        return operation(session, *args)
    except p11.PKCS11Error as exc:
        raise TokenError(f"card {label!r}: {type(exc).__name__} {exc}") from None
    finally:
        session.close()


def _resolve(module_name: str, name: str) -> Callable[..., Any]:
    allowed = module_name == __name__ or (
        module_name.startswith("siths_testkit.") and name.startswith("_on_token_")
    )
    if not allowed:
        raise TokenError(f"the PKCS#11 worker does not run {module_name}.{name}")
    return getattr(importlib.import_module(module_name), name)


def _answer(request: tuple[str, str, tuple[Any, ...]]) -> tuple[str, Any]:
    module_name, name, args = request
    try:
        return "ok", _resolve(module_name, name)(*args)
    except Exception as exc:
        try:
            pickle.dumps(exc)
        except Exception:
            exc = TokenError(f"{type(exc).__name__}: {exc}")
        return "error", exc


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer pickled requests from ``requests`` on ``answers`` until end of input."""
    while True:
        try:
            request = pickle.load(requests)  # noqa: S301 (a private pipe from our parent)
        except EOFError:
            return
        pickle.dump(_answer(request), answers)
        answers.flush()


def main() -> None:
    """Serve stdin → stdout. Started as ``python -c "…import main; main()"`` rather than with
    ``-m``, so that this module is imported under its own name, once."""
    # The answers go to the stdout we were given; anything a library prints to file
    # descriptor 1 from now on goes to stderr instead, so it cannot corrupt an answer.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, answers)

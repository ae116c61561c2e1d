"""Blocking calls from request handlers: on the event loop's thread first, where that waits for
nothing but the CPU.

The login's use cases are synchronous (the database, signing, revocation). Handed to a worker
thread, a call pays the hand-over both ways and, with other requests in flight, the GIL passed
between the loop and the worker at every SQLite call: at eight logins at a time, about a
millisecond of a login's 8.5 ms of server CPU (benchmarks/README.md). When the database lives in
the process (SQLite), a call mostly waits for nothing, so :class:`BlockingCalls` runs it on the
loop.

Whatever would wait there stops the call instead, raising :class:`WouldWait` where the waiting
would start: a revocation source on the network (:mod:`idp.siths.revocation`), or a write lock
that another process holds for longer than a moment (:mod:`idp.db` asks for it again on the
loop for a few milliseconds, several of another worker's login transactions). While the call has
committed no write, that is safe to undo: its transaction rolls back, and the whole call runs
again in a worker thread, where waiting holds up only that request. Once it has committed a
write it cannot start over; from then on it waits where it is, as it would in a worker thread.
In the login's calls the only transaction after a committed one is the participant's record
(:mod:`idp.saml.participants`), one short write.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import anyio.to_thread

logger = logging.getLogger("idp.blocking")

P = ParamSpec("P")
T = TypeVar("T")


class WouldWait(BaseException):
    """A call on the event loop's thread reached something that would wait. A BaseException,
    as asyncio's CancelledError is: an ``except Exception`` on the way (a best-effort audit
    write, say) must not swallow it and carry on."""


@dataclass
class _CallOnLoop:
    wrote: bool = False


_ON_LOOP: ContextVar[_CallOnLoop | None] = ContextVar("idp_call_on_loop", default=None)


def on_the_loop() -> bool:
    """True inside a call :class:`BlockingCalls` runs on the event loop's thread (one at a time,
    never interleaved with another)."""
    return _ON_LOOP.get() is not None


def waiting_refused() -> bool:
    """True inside a call :class:`BlockingCalls` runs on the loop that has committed no write
    yet: whatever would wait must raise :class:`WouldWait` (see :func:`before_waiting`)."""
    call = _ON_LOOP.get()
    return call is not None and not call.wrote


def before_waiting(what: str) -> None:
    """Call where something starts to wait (``what``: for the log). Raises
    :class:`WouldWait` when :func:`waiting_refused`; else returns, and the caller waits."""
    if waiting_refused():
        raise WouldWait(what)


def note_write_committed() -> None:
    """The current call has committed a write: it can no longer be run again from the start."""
    call = _ON_LOOP.get()
    if call is not None:
        call.wrote = True


class BlockingCalls:
    """Runs a handler's blocking call; built once at start-up. ``loop_first``: try the event
    loop's thread first (for an in-process database); else always a worker thread."""

    def __init__(self, *, loop_first: bool) -> None:
        self.loop_first = loop_first

    async def run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``call(*args, **kwargs)``'s result or exception, whichever thread ran it."""
        if self.loop_first:
            token = _ON_LOOP.set(_CallOnLoop())
            try:
                return call(*args, **kwargs)
            except WouldWait as exc:
                logger.debug("%s would wait (%s): run in a worker thread", call, exc)
            finally:
                _ON_LOOP.reset(token)
        # anyio's thread pool (Starlette's run_in_threadpool is this), context variables and all.
        return await anyio.to_thread.run_sync(functools.partial(call, *args, **kwargs))

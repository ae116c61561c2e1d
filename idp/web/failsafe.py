"""The last line of defence: any exception ends as the IdP's own page on a connection that stays
open, logged once as a JSON line.

Why not an ``exception_handler(Exception)``? Starlette hands those to its outermost
``ServerErrorMiddleware``, which sends the page and then re-raises; uvicorn then closes the
connection and prints a plain-text traceback. Behind nginx that closed keep-alive connection
counts as a failed node, and with both nodes "failed" nginx answers with its own bare 502.
This middleware sits inside the operations middleware (so the page carries the request id and
the access line its status) and lets nothing through.

What a caller may rely on:

- A database that cannot be reached (a restart, a dropped pooled connection) or a disk that
  cannot be written is *unavailable*, not broken: the user gets ``service_unavailable`` (503,
  Swedish and English, "try again") and the failure is audited as ``request.failed`` when the
  database can still take the row (when it cannot, the log line says so).
- A request whose transaction hit a database *connection* error is run once more, after the
  database answers again (waiting at most :data:`RETRY_WAIT_SECONDS`), before the user is told
  anything: a restart of PostgreSQL is invisible. Running a step again is safe: each login step
  is a conditional UPDATE, so one that had committed before the break is answered as a repeat
  (a completed login gets its answer again, as when nginx retries a GET on the other node) or
  refused with its own page (a SAML request already seen is a replay, unless it started a login
  that this browser still has waiting: then that login's chooser again).
- Anything else is ``internal_error`` (500) with the traceback in the log line.
"""

from __future__ import annotations

import asyncio
import errno
import html
import logging
import time
from collections.abc import Iterator

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from idp.audit import record_audit_event
from idp.db import Database
from idp.web.messages import MESSAGES
from idp.web.render import error_page

logger = logging.getLogger("idp.errors")

UNAVAILABLE = "service_unavailable"
INTERNAL = "internal_error"
# How long a request whose database connection broke waits for the database to answer again
# before it is run once more. A PostgreSQL restart takes well under this; a longer outage
# gets the "temporarily unavailable" page instead of a request held open.
RETRY_WAIT_SECONDS = 3.0
RETRY_POLL_SECONDS = 0.2
# Errors of a disk that cannot take a write (full, quota, read-only, failing).
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})
_DISK_MESSAGES = ("disk is full", "disk i/o error", "readonly database", "read-only")
_CONNECTION_ERRORS = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_connection_error(exc: BaseException) -> bool:
    """The database could not be reached or dropped the connection (worth one more try)."""
    return any(isinstance(link, _CONNECTION_ERRORS) for link in _chain(exc))


def is_disk_error(exc: BaseException) -> bool:
    for link in _chain(exc):
        if isinstance(link, OSError) and link.errno in _DISK_ERRNOS:
            return True
        if isinstance(link, OperationalError | InterfaceError):
            text = str(link.orig if link.orig is not None else link).lower()
            if any(marker in text for marker in _DISK_MESSAGES):
                return True
    return False


def failure_reason(exc: BaseException) -> str:
    """``service_unavailable`` for a database or disk that cannot serve now, else
    ``internal_error``."""
    return UNAVAILABLE if is_connection_error(exc) or is_disk_error(exc) else INTERNAL


def bare_error_answer(exc: BaseException) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of a minimal bilingual error page (reason code included) for
    a server that has no request to render the templates with."""
    reason = failure_reason(exc)
    message = MESSAGES[reason]
    body = (
        '<!doctype html><html lang="sv"><head><meta charset="utf-8">'
        f"<title>{html.escape(message.title_sv)}</title></head><body>"
        f"<h1>{html.escape(message.title_sv)}</h1><p>{html.escape(message.text_sv)}</p>"
        f'<div lang="en"><h2>{html.escape(message.title_en)}</h2>'
        f"<p>{html.escape(message.text_en)}</p></div>"
        f'<p>Felkod / Error code: <code id="reason">{reason}</code></p></body></html>'
    )
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")]
    return message.status_code, headers, body.encode("utf-8")


def _summary(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


class FailSafe:
    """Catches every exception of ``app`` and answers with :func:`error_page`."""

    def __init__(self, app: ASGIApp, database: Database) -> None:
        self.app = app
        self.database = database

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        started = False

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                received.append(message)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, recording_receive, tracking_send)
            return
        except ClientDisconnect:
            return  # nobody to answer
        except Exception as exc:
            if started or not is_connection_error(exc) or not await self._database_answers():
                await self._fail(scope, receive, send, exc, started)
                return
            logger.warning("database error (%s): running the request once more", _summary(exc))
        replay = list(received)

        async def replaying_receive() -> Message:
            return replay.pop(0) if replay else await receive()

        started = False
        try:
            await self.app(scope, replaying_receive, tracking_send)
        except ClientDisconnect:
            return
        except Exception as exc:
            await self._fail(scope, receive, send, exc, started)

    async def _database_answers(self) -> bool:
        deadline = time.monotonic() + RETRY_WAIT_SECONDS
        while True:
            try:
                await run_in_threadpool(self.database.ping)
                return True
            except Exception:  # still down: wait a little, up to the deadline
                if time.monotonic() + RETRY_POLL_SECONDS > deadline:
                    return False
                await asyncio.sleep(RETRY_POLL_SECONDS)

    async def _fail(
        self, scope: Scope, receive: Receive, send: Send, exc: Exception, started: bool
    ) -> None:
        reason = failure_reason(exc)
        path = scope.get("path", "")
        method = scope.get("method", "")
        if reason == INTERNAL:
            logger.error("unexpected error on %s %s", method, path, exc_info=exc)
        else:
            logger.error("%s on %s %s: %s", reason, method, path, _summary(exc))
        await self._audit(reason, f"{method} {path}: {_summary(exc)}")
        if started:
            # Half an answer is out: nothing truthful can follow it. The server ends the
            # connection when the app returns without finishing the response.
            return
        request = Request(scope, receive)
        retry_url = None
        # Loading the same step again is the way back (see the module doc). Only a path of this
        # origin: "//host/…" would be a link to another site.
        if method == "GET" and reason == UNAVAILABLE and not path.startswith("//"):
            query = scope.get("query_string", b"").decode("latin-1")
            retry_url = path + (f"?{query}" if query else "")
        response = error_page(request, reason, retry_url=retry_url)
        await response(scope, receive, send)

    async def _audit(self, reason: str, detail: str) -> None:
        def write() -> None:
            with self.database.session() as session:
                record_audit_event(
                    session, "request.failed", outcome="failed", reason=reason, detail=detail
                )

        try:
            await run_in_threadpool(write)
        except Exception as exc:  # the database or its disk is what failed: the log must do
            logger.error("audit event request.failed (%s) not stored: %s", reason, _summary(exc))

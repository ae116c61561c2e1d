"""uvicorn's HTTP protocol with the request limits it lacks, for both of a node's listeners.

uvicorn (0.55, with httptools) bounds only the wait between requests on a kept-alive
connection (``timeout_keep_alive``, armed after a response). Measured against ``idp serve``:
a 10 MB header was read into memory and answered; a connection that sent nothing after the TLS
handshake, or dripped a header a byte a second, stayed open for as long as the test waited.
:class:`BoundedHttpToolsProtocol` adds two bounds, answered with the IdP's own pages:

- a request head (request line and headers) over ``max_head_bytes`` gets 431;
- a request, head and body, must be complete within ``timeout`` seconds of the connection (its
  first request) or of its first byte (later ones); if it is not, a started request gets 408
  (the application, if already running, sees the client gone) and a connection that never
  sent a byte is closed.

What remains bounded elsewhere: the TLS handshake by the event loop (60 s, uvloop's and
asyncio's default) or by :mod:`idp.server.cert_listener`, body sizes by
:class:`idp.web.middleware.LimitsAndHeaders`.

It relies on these methods of uvicorn's ``HttpToolsProtocol``: ``connection_made``,
``connection_lost``, ``data_received``, ``on_headers_complete``, ``on_message_complete``,
``on_response_complete``, and on its ``cycle`` (``response_started``, ``disconnected``,
``message_event``).
"""

from __future__ import annotations

import asyncio
import http
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from idp.web.render import standalone_error_page

# After refusing, read and drop what the client still sends for this long before closing:
# closing with unread data resets the connection, and the browser may lose the answer.
LINGER_SECONDS = 2.0
REFUSAL_REASONS = {408: "request_timeout", 431: "request_header_too_large"}


@dataclass(frozen=True)
class RequestLimits:
    timeout: float = 20.0
    # Above what the IdP's own checks refuse with a page of their own (a SAML Redirect-binding
    # message is refused past 64 KB inflated; its deflated query is far smaller).
    max_head_bytes: int = 64 * 1024


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with :class:`RequestLimits` (see the module docstring). Build the
    class for given limits with :func:`bounded_http_protocol`."""

    limits = RequestLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._reading_head = True
        # Whether the current request's body has all arrived (the app may answer before).
        self._message_complete = True
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_request_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_request_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering before the close: dropped
        if not self._reading_head:
            super().data_received(data)
            return
        if self._request_timer is None:  # the first bytes of a later request
            self._arm_request_timer()
        room = self.limits.max_head_bytes - self._head_bytes
        # The parser sees at most the limit's worth of head: if the head has not ended within
        # it, it is too large, however the bytes were split into reads (a single read can hold
        # the whole 100 KB head, and the request would otherwise be parsed and served).
        head, rest = data[:room], data[room:]
        self._head_bytes += len(head)
        if head:
            super().data_received(head)
        if not rest:
            return
        if self._reading_head:
            if not self.transport.is_closing():
                self._refuse(431)
            return
        self.data_received(rest)  # the body, or the next pipelined request

    def on_headers_complete(self) -> None:
        self._reading_head = False
        super().on_headers_complete()

    def on_message_begin(self) -> None:
        self._message_complete = False
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._cancel_request_timer()
        self._message_complete = True
        if self.cycle is not None and self.cycle.response_complete:
            # Answered before the body had all arrived: what follows is the next head.
            self._start_next_head()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        # Before the request's body has all arrived, what follows is still that body.
        if self._message_complete:
            self._start_next_head()
        super().on_response_complete()

    def _start_next_head(self) -> None:
        # A pipelined request waiting to start has its head already: what follows is its body.
        self._reading_head = not self.pipeline
        self._head_bytes = 0

    def _arm_request_timer(self) -> None:
        self._cancel_request_timer()
        self._request_timer = self.loop.call_later(self.limits.timeout, self._timed_out)

    def _cancel_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _timed_out(self) -> None:
        self._request_timer = None
        if self.transport.is_closing():
            return
        if self._reading_head and not self._head_bytes:
            self.transport.close()  # nothing was asked: nothing to answer
            return
        cycle = self.cycle
        if not self._reading_head and cycle is not None:
            if cycle.response_started:
                # Answered before the body ended (or answering): it cannot become a 408.
                self.transport.close()
                return
            # The application waits for the rest of the body: it sees the client gone, and
            # whatever it still sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self._refuse(408)

    def _refuse(self, status: int) -> None:
        """Answer with the IdP's page for ``status``, drop what follows, close soon after."""
        self._refused = True
        self._cancel_request_timer()
        page = standalone_error_page(REFUSAL_REASONS[status])
        lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode("ascii")]
        kept = (b"content-type", b"content-length", b"content-security-policy", b"cache-control")
        lines += [name + b": " + value for name, value in page.raw_headers if name in kept]
        lines.append(b"connection: close")
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + page.body)
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def bounded_http_protocol(limits: RequestLimits) -> type[BoundedHttpToolsProtocol]:
    """The protocol class to give uvicorn (``Config(http=...)``) for ``limits``."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"limits": limits})

"""The embedded client-certificate listener: TLS that asks for a card, then the same ASGI app.

Why not uvicorn's TLS for this port? Python's ``ssl`` module (what every ASGI server uses) can
ask for a client certificate, but it verifies the certificate *during the handshake* against
OpenSSL's store and aborts the connection if that fails. A user with an expired card, or the
wrong certificate, would then see the browser's bare TLS error instead of our page telling them
what to do; and the trust decision would be OpenSSL's, not the SITHS policy in ``idp.siths``.
Nor does any ASGI server hand the certificate to the application yet.

So this listener does what nginx does with ``ssl_verify_client optional_no_ca``: pyOpenSSL
requests a certificate and accepts whatever the client proves possession of (the TLS
CertificateVerify signature is still checked by OpenSSL), and the certificate is handed to the
application in the standard ASGI TLS extension (``scope["extensions"]["tls"]
["client_cert_chain"]``), where ``idp.client_certificate`` reads it. All validation
happens in ``idp.siths.validation``, the same code for every login method and deployment.

Only the TLS layer is this module's (:class:`_CardTlsProtocol`, pyOpenSSL over memory BIOs).
Above it runs the main listener's HTTP protocol (uvicorn's httptools protocol with
:mod:`idp.server.http_limits`), so both ports parse, bound and answer HTTP the same way.
Every phase of a connection is bounded (:class:`ListenerLimits`), so that sockets that send
nothing, or drip a byte at a time, are closed within seconds: the client's TLS hello, the whole
handshake, the wait for the next request on a kept-alive connection, and the whole request
(head and body) from its first byte. A request head over the limit gets the IdP's 431 page, a
request that does not arrive in time its 408 page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from uvicorn.server import ServerState

from idp.server.http_limits import BoundedHttpToolsProtocol, RequestLimits
from idp.web.failsafe import bare_error_answer

logger = logging.getLogger("idp.cert_listener")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
READ_SIZE = 65536


@dataclass(frozen=True)
class ListenerLimits:
    """How long each phase of a connection may take, in seconds (``idp.config.Settings``
    ``cert_*`` settings). The defaults are those of a node that was given no settings."""

    # From the connection to the client's TLS hello: nothing human happens before it.
    tls_hello: float = 10.0
    # The whole handshake: it includes choosing the certificate and typing the card's PIN
    # (the card signs the handshake), so it is a person's time, not a machine's.
    handshake: float = 60.0
    # From the last response to the first byte of the next request.
    keep_alive: float = 30.0
    # A whole request (head and body), from the handshake (the connection's first request) or
    # from its first byte (later ones) to its last, however the bytes trickle in.
    request: float = 20.0


def _accept_any_certificate(
    _connection: SSL.Connection, _certificate: Any, _errno: int, _depth: int, _ok: int
) -> bool:
    # Trust is decided by idp.siths.validation after the handshake, never by OpenSSL's store.
    return True


def make_tls_context(cert_file: Path, key_file: Path) -> SSL.Context:
    """A TLS 1.2+ server context that requests (but does not require) a client certificate."""
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.use_certificate_chain_file(str(cert_file))
    context.use_privatekey_file(str(key_file))
    context.check_privatekey()
    context.set_verify(SSL.VERIFY_PEER, _accept_any_certificate)
    # No resumption: every certificate login is a fresh handshake with the card present.
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    # No renegotiation either: the certificate read after the handshake is the connection's
    # for good; a TLS 1.2 renegotiation could otherwise present another one mid-connection.
    # (OpenSSL 3 already refuses a client's renegotiation by default: this says so whatever
    # the library's default.)
    context.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_RENEGOTIATION)
    context.set_session_id(b"idp-cert-login")
    return context


def with_last_resort_answer(app: ASGIApp) -> ASGIApp:
    """``app``, but if it raises before answering (FailSafe is inside the IdP's app, so only a
    broken app could), the client still gets a bilingual page with a reason code, not uvicorn's
    bare "Internal Server Error"."""

    async def answering(scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app(scope, receive, tracking_send)
        except Exception as exc:
            if started or scope["type"] != "http":
                raise  # uvicorn logs it
            logger.error("application error on the certificate listener", exc_info=exc)
            status, headers, body = bare_error_answer(exc)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    return answering


class _CardHttpProtocol(BoundedHttpToolsProtocol):
    """The main listener's HTTP protocol, given the card's chain: each request's scope carries
    it in the ASGI TLS extension, and a client's own copy of the proxy's certificate header is
    dropped (defence in depth: the app believes that header only from trusted proxies)."""

    strip_header: bytes = b""

    def __init__(self, *args: Any, chain: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chain = chain

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() != self.strip_header:
            super().on_header(name, value)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {
            "tls": {
                "server_cert": None,
                "client_cert_chain": self.chain,
                "client_cert_name": None,
                "client_cert_error": None,
                "tls_version": None,
                "cipher_suite": None,
            }
        }


class _DecryptedTransport(asyncio.Transport):
    """What the HTTP protocol writes to and closes: plaintext in, TLS records out."""

    def __init__(self, tls: _CardTlsProtocol) -> None:
        super().__init__()
        self._tls = tls

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._tls.write_plaintext(bytes(data))

    def close(self) -> None:
        self._tls.close()

    def abort(self) -> None:
        self._tls.raw.abort()

    def is_closing(self) -> bool:
        return self._tls.raw.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sslcontext":
            return self._tls.context
        return self._tls.raw.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._tls.raw.pause_reading()

    def resume_reading(self) -> None:
        self._tls.raw.resume_reading()

    def is_reading(self) -> bool:
        return self._tls.raw.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._tls.raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._tls.raw.set_write_buffer_limits(high, low)


class _CardTlsProtocol(asyncio.Protocol):
    """One connection: the handshake within its limits, then the decrypted bytes to a new
    HTTP protocol (``make_http(chain)``), which answers through :class:`_DecryptedTransport`."""

    def __init__(
        self,
        context: SSL.Context,
        limits: ListenerLimits,
        make_http: Callable[[list[str]], asyncio.Protocol],
    ) -> None:
        self.context = context
        self._limits = limits
        self._make_http = make_http
        self._tls = SSL.Connection(context, None)
        self._tls.set_accept_state()
        self._http: asyncio.Protocol | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self.raw: asyncio.Transport = None  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport has the methods of asyncio.Transport, not its class.
        self.raw = transport  # type: ignore[assignment]
        loop = self._loop
        # The hello limit until the server has answered the hello; the handshake limit whole.
        self._timers = [
            loop.call_later(self._limits.tls_hello, self._give_up, "no TLS hello"),
            loop.call_later(self._limits.handshake, self._give_up, "handshake too slow"),
        ]

    def data_received(self, data: bytes) -> None:
        self._tls.bio_write(data)
        try:
            handshake_just_ended = self._http is None
            if handshake_just_ended and not self._handshake():
                return
            self._read_plaintext(handshake_just_ended)
        except SSL.Error as exc:
            logger.debug("certificate listener connection ended: %r", exc)
            self._flush()
            self.raw.close()

    def eof_received(self) -> bool:
        # A TLS connection ends with close_notify; a bare TCP end is the client gone.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._http is not None:
            self._http.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._http is not None:
            self._http.pause_writing()

    def resume_writing(self) -> None:
        if self._http is not None:
            self._http.resume_writing()

    def write_plaintext(self, data: bytes) -> None:
        # Gathered until the event loop's next turn: a response's head and body (written one
        # after the other) leave in one TLS record and one system call.
        if self.raw.is_closing():
            return
        if not self._pending:
            self._loop.call_soon(self._send_pending)
        self._pending.append(data)

    def close(self) -> None:
        if self.raw.is_closing():
            return
        self._send_pending()
        with contextlib.suppress(SSL.Error):
            self._tls.shutdown()  # close_notify
        self._flush()
        self.raw.close()

    def _send_pending(self) -> None:
        data, self._pending = b"".join(self._pending), []
        if not data or self.raw.is_closing():
            return
        view = memoryview(data)
        try:
            while view:
                written = self._tls.send(view[:16384])
                view = view[written:]
        except SSL.Error as exc:  # the connection broke under the answer: nothing to add
            logger.debug("certificate listener could not send: %r", exc)
            self.raw.abort()
            return
        self._flush()

    def _handshake(self) -> bool:
        """Advance the handshake; True once it is complete and the HTTP protocol is ready."""
        try:
            self._tls.do_handshake()
        except SSL.WantReadError:
            if self._flush():  # the hello is answered: the handshake limit alone applies
                self._timers[0].cancel()
            return False
        if self._tls.get_protocol_version_name() != "TLSv1.3":
            self._flush()  # TLS 1.2: the server's Finished, which the client waits for
        # In TLS 1.3 all the server has to send now is its session tickets (which can never
        # resume here): they leave with the answer to the request (see _read_plaintext).
        self._cancel_timers()
        self._http = self._make_http(self._peer_chain_pem())
        self._http.connection_made(_DecryptedTransport(self))
        return True

    def _read_plaintext(self, handshake_just_ended: bool) -> None:
        """Hand the request's bytes to the HTTP protocol. What TLS has to send then (the TLS 1.3
        session tickets after the handshake, a KeyUpdate in reply) leaves with the answer, in its
        system call (_send_pending); but records that bring no request after the handshake (an
        alert refusing a renegotiation, say) are answered at once."""
        delivered = False
        while self._http is not None and not self.raw.is_closing():
            try:
                data = self._tls.recv(READ_SIZE)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:  # the client's close_notify
                self.close()
                break
            self._http.data_received(data)
            delivered = True
        if not delivered and not handshake_just_ended:
            self._flush()

    def _flush(self) -> bool:
        """Send what TLS has to send; whether there was anything."""
        sent = False
        while True:
            try:
                data = self._tls.bio_read(READ_SIZE)
            except SSL.WantReadError:
                break
            if not data:
                break
            if not self.raw.is_closing():
                self.raw.write(data)
            sent = True
        return sent

    def _give_up(self, why: str) -> None:
        logger.debug("certificate listener connection closed: %s", why)
        self.raw.abort()

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()

    def _peer_chain_pem(self) -> list[str]:
        """The client's certificate first, then any certificates it sent with it."""
        leaf = self._tls.get_peer_certificate(as_cryptography=True)
        if leaf is None:
            return []
        chain = [leaf.public_bytes(Encoding.PEM).decode("ascii")]
        for extra in self._tls.get_peer_cert_chain(as_cryptography=True) or []:
            pem = extra.public_bytes(Encoding.PEM).decode("ascii")
            if pem not in chain:
                chain.append(pem)
        return chain


class CertificateListener:
    """Serves ``app`` on its own TLS port, with the client certificate in the ASGI scope."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str,
        port: int,
        cert_file: Path,
        key_file: Path,
        strip_header: str = "x-ssl-client-cert",
        sockets: list[socket.socket] | None = None,
        limits: ListenerLimits | None = None,
        server_state: ServerState | None = None,
    ) -> None:
        """``sockets``: listening sockets already bound to the port (a node's workers all accept
        on the supervisor's); None: bind ``host`` and ``port`` here.
        ``server_state``: the main listener's uvicorn state, so that its graceful shutdown
        waits for this port's requests too (and its answers carry the same Date header)."""
        self._limits = limits or ListenerLimits()
        self._host = host
        self._port = port
        self._context = make_tls_context(cert_file, key_file)
        self._server_state = server_state or ServerState()
        self._http_class = type(
            "CardHttpProtocol",
            (_CardHttpProtocol,),
            {
                "limits": RequestLimits(timeout=self._limits.request),
                "strip_header": strip_header.lower().encode("latin-1"),
            },
        )
        self._config = uvicorn.Config(
            with_last_resort_answer(app),
            log_config=None,
            proxy_headers=False,
            server_header=False,
            access_log=False,
            ws="none",
            lifespan="off",
            # Typed int by uvicorn, used as call_later's delay: a fraction works.
            timeout_keep_alive=self._limits.keep_alive,  # type: ignore[arg-type]
        )
        self._config.load()
        self._sockets = sockets
        self._servers: list[asyncio.Server] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def new_connection() -> _CardTlsProtocol:
            return _CardTlsProtocol(self._context, self._limits, self._new_http)

        if self._sockets is None:
            self._servers = [await loop.create_server(new_connection, self._host, self._port)]
        else:
            self._servers = [
                await loop.create_server(new_connection, sock=sock) for sock in self._sockets
            ]

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()

    def _new_http(self, chain: list[str]) -> asyncio.Protocol:
        return self._http_class(self._config, self._server_state, {}, chain=chain)

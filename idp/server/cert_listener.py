"""The embedded client-certificate listener: TLS that asks for a card, then the same ASGI app.

Why not uvicorn for this port? Python's ``ssl`` module (what every ASGI server uses) can ask for
a client certificate, but it verifies the certificate *during the handshake* against OpenSSL's
store and aborts the connection if that fails. A user with an expired card, or the wrong
certificate, would then see the browser's bare TLS error instead of our page telling them what
to do; and the trust decision would be OpenSSL's, not the SITHS policy in ``idp.siths``. Nor
does any ASGI server hand the certificate to the application yet.

So this listener does what nginx does with ``ssl_verify_client optional_no_ca``: pyOpenSSL
requests a certificate and accepts whatever the client proves possession of (the TLS
CertificateVerify signature is still checked by OpenSSL), and the certificate is handed to the
application in the standard ASGI TLS extension (``scope["extensions"]["tls"]
["client_cert_chain"]``), where ``idp.client_certificate`` reads it. All validation
happens in ``idp.siths.validation``, the same code for every login method and deployment.

The listener speaks HTTP/1.1 (h11) and serves only the few small requests of a certificate
login. Every phase of a connection is bounded (:class:`ListenerLimits`), so that sockets
that send nothing, or drip a byte at a time, are closed within seconds: the client's TLS hello,
the whole handshake, the wait for the next request on a kept-alive connection, and the whole
request (head and body) from its first byte. A request head over :data:`MAX_HEADER_BYTES`
gets the IdP's 431 page, a request that does not arrive in time its 408 page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from idp.web.failsafe import bare_error_answer
from idp.web.render import standalone_error_page

logger = logging.getLogger("idp.cert_listener")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
MAX_BODY_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
READ_SIZE = 65536
# After refusing a request, read (and drop) what the client is still sending, for at most this
# long and this much, before closing: closing with unread data resets the connection, and the
# browser may then lose the answer before it has shown it (nginx's lingering_close).
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 1024 * 1024
# The reason codes of the pages for a refused request head (idp.web.messages).
REFUSAL_REASONS = {
    408: "request_timeout",
    431: "request_header_too_large",
}


@dataclass(frozen=True)
class ListenerLimits:
    """How long each phase of a connection may take, in seconds (``idp.config.Settings``
    ``cert_*`` settings). The defaults are those of a node that was given no settings."""

    # From the connection to the client's TLS hello: nothing human happens before it.
    tls_hello: float = 10.0
    # The whole handshake: it includes choosing the certificate and typing the card's PIN
    # (the card signs the handshake), so it is a person's time, not a machine's.
    handshake: float = 60.0
    # From the handshake or the last response to the first byte of the next request.
    keep_alive: float = 30.0
    # From a request's first byte to its last (head and body), however the bytes trickle in.
    request: float = 20.0


_ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}


async def _collect_answer(
    app: ASGIApp, scope: dict[str, Any], body: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Run ``app`` on ``scope`` with ``body`` as the whole request; its status, headers and
    body, collected whole (the listener's answers are small pages)."""
    delivered = False
    status = 500
    headers: list[tuple[bytes, bytes]] = []
    content = bytearray()

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # nothing more will come; wait to be cancelled
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            content.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, headers, bytes(content)


class _RequestTimedOut(Exception):
    pass


class _ClientGone(Exception):
    pass


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
    context.set_options(SSL.OP_NO_TICKET)
    context.set_session_id(b"idp-cert-login")
    return context


class _TlsStream:
    """pyOpenSSL over asyncio streams, through memory BIOs."""

    def __init__(
        self, connection: SSL.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._tls = connection
        self._reader = reader
        self._writer = writer

    async def _flush(self) -> int:
        """Send what TLS has to send; returns how many bytes that was."""
        sent = 0
        while True:
            try:
                data = self._tls.bio_read(READ_SIZE)
            except SSL.WantReadError:
                break
            if not data:
                break
            self._writer.write(data)
            sent += len(data)
        await self._writer.drain()
        return sent

    async def _fill(self) -> bool:
        data = await self._reader.read(READ_SIZE)
        if not data:
            self._tls.bio_shutdown()
            return False
        self._tls.bio_write(data)
        return True

    async def handshake(self, hello_timeout: float) -> None:
        """Complete the handshake. Until the server has answered the client's hello, each
        read must arrive within ``hello_timeout`` seconds of the start (``TimeoutError``);
        the rest is bounded by the caller."""
        hello_deadline = asyncio.get_running_loop().time() + hello_timeout
        answered = False
        while True:
            try:
                self._tls.do_handshake()
            except SSL.WantReadError:
                answered = await self._flush() > 0 or answered
                async with asyncio.timeout_at(None if answered else hello_deadline):
                    filled = await self._fill()
                if not filled:
                    raise _ClientGone from None
                continue
            await self._flush()
            return

    async def receive(self) -> bytes:
        while True:
            try:
                return self._tls.recv(READ_SIZE)
            except SSL.WantReadError:
                await self._flush()
                if not await self._fill():
                    return b""
            except (SSL.ZeroReturnError, SSL.SysCallError):
                return b""

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._tls.send(bytes(view[:16384]))
            view = view[written:]
            await self._flush()

    def peer_chain_pem(self) -> list[str]:
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

    def tls_version(self) -> str:
        return self._tls.get_protocol_version_name()


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
        reuse_port: bool = False,
        limits: ListenerLimits | None = None,
    ) -> None:
        """``reuse_port``: bind with ``SO_REUSEPORT``, so that the node's other worker processes
        can listen on the same port and the kernel spreads the connections over them."""
        self._app = app
        self._limits = limits or ListenerLimits()
        self._host = host
        self._port = port
        self._context = make_tls_context(cert_file, key_file)
        self._strip = strip_header.lower().encode("latin-1")
        self._reuse_port = reuse_port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve_connection, self._host, self._port, reuse_port=self._reuse_port
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        connection = SSL.Connection(self._context, None)
        connection.set_accept_state()
        stream = _TlsStream(connection, reader, writer)
        try:
            await asyncio.wait_for(stream.handshake(self._limits.tls_hello), self._limits.handshake)
            await self._serve_http(stream, peer)
        except (_ClientGone, SSL.Error, ConnectionError, TimeoutError, h11.ProtocolError) as exc:
            logger.debug("certificate listener connection from %s ended: %r", peer, exc)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_http(self, stream: _TlsStream, peer: Any) -> None:
        http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        chain = stream.peer_chain_pem()
        while True:
            try:
                request, body = await self._read_request(http, stream)
            except h11.RemoteProtocolError as error:
                # A malformed head, or one over MAX_HEADER_BYTES (431): say so, then close.
                await self._refuse(http, stream, error.error_status_hint)
                return
            except _RequestTimedOut:
                await self._refuse(http, stream, 408)
                return
            if request is None:
                return
            if body is None:
                await self._send(http, stream, 413, [], b"Request body too large")
                return
            status, headers, content = await self._call_app(request, body, chain, stream, peer)
            await self._send(http, stream, status, headers, content)
            if http.our_state is h11.MUST_CLOSE or http.their_state is h11.MUST_CLOSE:
                return
            try:
                http.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _read_request(
        self, http: h11.Connection, stream: _TlsStream
    ) -> tuple[h11.Request | None, bytes | None]:
        """The next request and its body (``None`` if over :data:`MAX_BODY_BYTES`), or
        ``(None, None)`` if the client closed. Raises ``TimeoutError`` if no request starts
        within the keep-alive limit, :class:`_RequestTimedOut` if one started and is not
        complete within the request limit, ``h11.RemoteProtocolError`` if it is malformed."""
        request: h11.Request | None = None
        body = bytearray()
        deadline: float | None = None  # set by the request's first bytes
        loop = asyncio.get_running_loop()
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                if deadline is None:
                    data = await asyncio.wait_for(stream.receive(), self._limits.keep_alive)
                    deadline = loop.time() + self._limits.request
                else:
                    try:
                        async with asyncio.timeout_at(deadline):
                            data = await stream.receive()
                    except TimeoutError:
                        raise _RequestTimedOut from None
                http.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body.extend(event.data)
                if len(body) > MAX_BODY_BYTES:
                    return request, None
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None, None

    async def _call_app(
        self,
        request: h11.Request,
        body: bytes,
        chain: list[str],
        stream: _TlsStream,
        peer: Any,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Run the app for one request; its status, headers and whole body."""
        try:
            return await _collect_answer(self._app, self._scope(request, chain, peer), body)
        except Exception as exc:
            # The app answers its own errors (idp.web.failsafe); this is what is left if even
            # that failed: the same reason code and bilingual text, without the templates.
            logger.error("application error on the certificate listener", exc_info=exc)
            return bare_error_answer(exc)

    def _scope(self, request: h11.Request, chain: list[str], peer: Any) -> dict[str, Any]:
        """The ASGI scope of ``request``, the card's chain in the TLS extension."""
        path, _, query = request.target.decode("latin-1").partition("?")
        return {
            "type": "http",
            "asgi": _ASGI_VERSION,
            "http_version": request.http_version.decode("ascii"),
            "method": request.method.decode("ascii"),
            "scheme": "https",
            "path": urllib.parse.unquote(path),
            "raw_path": path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            # h11 gives the names in lower case already.
            "headers": [(name, value) for name, value in request.headers if name != self._strip],
            "client": (peer[0], peer[1]) if peer else None,
            "server": (self._host, self._port),
            "state": {},
            "extensions": {
                "tls": {
                    "server_cert": None,
                    "client_cert_chain": chain,
                    "client_cert_name": None,
                    "client_cert_error": None,
                    "tls_version": None,
                    "cipher_suite": None,
                }
            },
        }

    @classmethod
    async def _refuse(cls, http: h11.Connection, stream: _TlsStream, status: int) -> None:
        """Answer a request that could not be read with the IdP's page for ``status``, and
        close (h11 lets a server answer even before the request's head is complete)."""
        page = standalone_error_page(REFUSAL_REASONS.get(status, "malformed_request"))
        kept = (b"content-type", b"content-security-policy", b"cache-control")
        headers = [(name, value) for name, value in page.raw_headers if name in kept]
        headers.append((b"connection", b"close"))
        with contextlib.suppress(h11.LocalProtocolError):
            await cls._send(http, stream, status, headers, page.body)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LINGER_SECONDS):
                dropped = 0
                while dropped < LINGER_MAX_BYTES and (data := await stream.receive()):
                    dropped += len(data)

    @staticmethod
    async def _send(
        http: h11.Connection,
        stream: _TlsStream,
        status: int,
        headers: list[tuple[bytes, bytes]],
        content: bytes,
    ) -> None:
        headers = [
            (n, v) for n, v in headers if n.lower() not in (b"content-length", b"transfer-encoding")
        ]
        headers.append((b"content-length", str(len(content)).encode("ascii")))
        data = http.send(h11.Response(status_code=status, headers=headers))
        data += http.send(h11.Data(data=content)) if content else b""
        data += http.send(h11.EndOfMessage())
        await stream.send(data)

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
["client_cert_chain"]``), where ``idp.methods.client_certificate`` reads it. All validation
happens in ``idp.siths.validation``, the same code for every login method and deployment.

The listener speaks HTTP/1.1 (h11) and serves only the few small requests of a certificate
login; bodies are bounded and connections time out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import h11
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from idp.web.failsafe import bare_error_answer

logger = logging.getLogger("idp.cert_listener")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
# The user may be typing a PIN during the handshake: allow for it.
HANDSHAKE_TIMEOUT_SECONDS = 120.0
IDLE_TIMEOUT_SECONDS = 30.0
MAX_BODY_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
READ_SIZE = 65536


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

    async def _flush(self) -> None:
        while True:
            try:
                data = self._tls.bio_read(READ_SIZE)
            except SSL.WantReadError:
                break
            if not data:
                break
            self._writer.write(data)
        await self._writer.drain()

    async def _fill(self) -> bool:
        data = await self._reader.read(READ_SIZE)
        if not data:
            self._tls.bio_shutdown()
            return False
        self._tls.bio_write(data)
        return True

    async def handshake(self) -> None:
        while True:
            try:
                self._tls.do_handshake()
            except SSL.WantReadError:
                await self._flush()
                if not await self._fill():
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
    ) -> None:
        """``reuse_port``: bind with ``SO_REUSEPORT``, so that the node's other worker processes
        can listen on the same port and the kernel spreads the connections over them."""
        self._app = app
        self._host = host
        self._port = port
        self._context = make_tls_context(cert_file, key_file)
        self._strip_header = strip_header.lower().encode("latin-1")
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
            await asyncio.wait_for(stream.handshake(), HANDSHAKE_TIMEOUT_SECONDS)
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
            request, body = await self._read_request(http, stream)
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
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(stream.receive(), IDLE_TIMEOUT_SECONDS)
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
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        headers = [
            (name.lower(), value)
            for name, value in request.headers
            if name.lower() != self._strip_header
        ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": request.http_version.decode("ascii"),
            "method": request.method.decode("ascii"),
            "scheme": "https",
            "path": urllib.parse.unquote(path),
            "raw_path": path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": headers,
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
        delivered = False
        status = 500
        response_headers: list[tuple[bytes, bytes]] = []
        content = bytearray()

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # nothing more will come; wait to be cancelled
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, response_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                content.extend(message.get("body", b""))

        try:
            await self._app(scope, receive, send)
        except Exception as exc:
            # The app answers its own errors (idp.web.failsafe); this is what is left if even
            # that failed: the same reason code and bilingual text, without the templates.
            logger.error("application error on the certificate listener", exc_info=exc)
            return bare_error_answer(exc)
        return status, response_headers, bytes(content)

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

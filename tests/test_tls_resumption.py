"""TLS session resumption and keep-alive on the two embedded listeners, over real sockets.

The main listener lets a browser resume its TLS session (TLS 1.3 session tickets), so coming
back to the IdP costs no full handshake. The card listener never does: a resumed session
carries no CertificateVerify, and every certificate login must be a handshake that the card
itself signs; nor does it renegotiate, so the card of a connection never changes.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
import urllib.parse

import pytest
from OpenSSL import SSL

from tests.conftest import IdpUnderTest
from tests.helpers.support import tls_context


def _get(
    context: ssl.SSLContext, url: str, session: ssl.SSLSession | None = None
) -> tuple[ssl.SSLSocket, bytes]:
    """One HTTP/1.1 GET of ``url`` on a new connection (kept open), and the whole answer."""
    parts = urllib.parse.urlsplit(url)
    raw = socket.create_connection((parts.hostname, parts.port), timeout=10)
    connection = context.wrap_socket(raw, server_hostname=parts.hostname, session=session)
    _request(connection, parts)
    return connection, _read_answer(connection)


def _request(connection: ssl.SSLSocket, parts: urllib.parse.SplitResult) -> None:
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n"
    connection.sendall(head.encode("ascii"))


def _read_answer(connection: ssl.SSLSocket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += connection.recv(65536)
    return head


def test_main_listener_resumes_a_tls_session(idp: IdpUnderTest) -> None:
    context = tls_context(idp.ca_file)
    url = f"{idp.base_url}/static/style.css"
    first, head = _get(context, url)
    assert head.startswith(b"HTTP/1.1 200"), head
    # TLS 1.3 sends its tickets after the handshake: they have arrived with the answer.
    session = first.session
    assert not first.session_reused and session is not None and session.has_ticket
    first.close()
    second, head = _get(context, url, session)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert second.session_reused
    second.close()


def test_card_listener_never_resumes_a_session(idp: IdpUnderTest) -> None:
    context = tls_context(idp.ca_file, *idp.card("anna"))
    url = f"{idp.cert_login_url}/static/style.css"
    first, head = _get(context, url)
    assert head.startswith(b"HTTP/1.1 200"), head
    session = first.session
    first.close()
    second, head = _get(context, url, session)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert not second.session_reused  # a full handshake: the card signed it again
    second.close()


def test_main_listener_keeps_an_idle_connection_past_a_pause_on_the_chooser(
    idp: IdpUnderTest,
) -> None:
    """uvicorn's default closes an idle connection after 5 s; a user reading the chooser takes
    longer, and the next page would pay for a new TLS handshake."""
    context = tls_context(idp.ca_file)
    url = urllib.parse.urlsplit(f"{idp.base_url}/static/style.css")
    connection, head = _get(context, url.geturl())
    assert head.startswith(b"HTTP/1.1 200"), head
    time.sleep(6.5)
    _request(connection, url)
    assert _read_answer(connection).startswith(b"HTTP/1.1 200")
    connection.close()


def test_card_listener_refuses_a_renegotiation(idp: IdpUnderTest) -> None:
    """The card read after the handshake is the connection's for good: a TLS 1.2 client that
    renegotiates (where it could present another certificate) is refused, not served."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_max_proto_version(SSL.TLS1_2_VERSION)
    context.load_verify_locations(str(idp.ca_file))
    context.set_verify(SSL.VERIFY_PEER, lambda *_: True)
    cert_file, key_file = idp.card("anna")
    context.use_certificate_file(str(cert_file))
    context.use_privatekey_file(str(key_file))
    parts = urllib.parse.urlsplit(idp.cert_login_url)
    raw = socket.create_connection((parts.hostname, parts.port))
    # pyOpenSSL wants a blocking socket; a kernel timeout keeps a silent server from hanging it.
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 10, 0))
    connection = SSL.Connection(context, raw)
    connection.set_tlsext_host_name(b"localhost")
    connection.set_connect_state()
    connection.do_handshake()
    head = f"GET /healthz HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode("ascii")
    connection.sendall(head)
    assert connection.recv(65536).startswith(b"HTTP/1.1 200")
    assert connection.renegotiate()
    with pytest.raises(SSL.Error) as refused:
        connection.do_handshake()
        connection.sendall(head)
        connection.recv(65536)
    assert "no renegotiation" in str(refused.value).lower() or isinstance(
        refused.value, SSL.SysCallError
    ), refused.value
    connection.close()

"""The listeners' limits over raw sockets (issue 14 finding 5).

A socket that never says hello, a handshake that stalls, a request that drips a byte at a time
and a 100 KB cookie are each answered within the configured bound, by a real ``idp serve``
whose limits are set low so that the tests run in seconds. Each test fails against a listener
without the limit: the old certificate listener waited 120 s for a handshake and 30 s per
read, and closed on an oversized head without an answer; uvicorn alone (the main listener)
bounded neither the size nor the time of a request head.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from siths_testkit.pki import TestPki
from tests.helpers.support import VENV_BIN, RunningServer, free_port, reason_code, start_server

TLS_HELLO_LIMIT = 1.0
HANDSHAKE_LIMIT = 3.0
KEEP_ALIVE_LIMIT = 2.0
REQUEST_LIMIT = 2.0
HEAD_LIMIT = 2.0  # the main listener's
# Time for a loaded test machine to notice a limit has passed, and for the answer to travel.
SLACK = 3.0


@dataclass
class Listener:
    server: RunningServer
    port: int
    ca_file: Path

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def tls(self) -> ssl.SSLSocket:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return context.wrap_socket(self.connect(), server_hostname="localhost")


@dataclass
class Node:
    main: Listener
    card: Listener


@pytest.fixture(scope="module")
def node(test_pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    work = tmp_path_factory.mktemp("cert-limits")
    (work / "sp-metadata").mkdir()
    port, cert_port = free_port(), free_port()
    env = {
        "IDP_VAR_DIR": str(work / "var"),
        "IDP_PKI_DIR": str(test_pki.directory),
        "IDP_SP_METADATA_DIR": str(work / "sp-metadata"),
        "IDP_OIDC_KEYS_DIR": str(work / "oidc-keys"),
        "IDP_PORT": str(port),
        "IDP_CERT_PORT": str(cert_port),
        "IDP_BASE_URL": f"https://localhost:{port}",
        "IDP_CERT_LOGIN_URL": f"https://localhost:{cert_port}",
        "IDP_CERT_TLS_HELLO_TIMEOUT_SECONDS": str(TLS_HELLO_LIMIT),
        "IDP_CERT_HANDSHAKE_TIMEOUT_SECONDS": str(HANDSHAKE_LIMIT),
        "IDP_CERT_KEEP_ALIVE_TIMEOUT_SECONDS": str(KEEP_ALIVE_LIMIT),
        "IDP_CERT_REQUEST_TIMEOUT_SECONDS": str(REQUEST_LIMIT),
        "IDP_REQUEST_TIMEOUT_SECONDS": str(HEAD_LIMIT),
    }
    server = start_server(
        [str(VENV_BIN / "idp"), "serve", "--log-level", "warning"],
        env,
        f"https://localhost:{cert_port}/healthz",
        test_pki.tls_ca_cert,
        work / "idp.log",
    )
    try:
        yield Node(
            main=Listener(server, port, test_pki.tls_ca_cert),
            card=Listener(server, cert_port, test_pki.tls_ca_cert),
        )
    finally:
        server.stop()


@pytest.fixture(scope="module")
def listener(node: Node) -> Listener:
    """The certificate listener."""
    return node.card


@pytest.fixture(scope="module", params=["main", "card"])
def each_listener(node: Node, request: pytest.FixtureRequest) -> Listener:
    listener: Listener = getattr(node, request.param)
    return listener


def seconds_until_closed(sock: socket.socket, limit: float) -> float:
    """How long until the server closes ``sock`` (reading and dropping whatever it sends);
    fails if it is still open after ``limit`` seconds."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        pytest.fail(f"the connection was still open after {limit} s")
    except (ConnectionResetError, ssl.SSLError):
        pass
    return time.monotonic() - start


def read_response(sock: ssl.SSLSocket, limit: float) -> bytes:
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, ssl.SSLError, TimeoutError):
        pass
    return data


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response.split(b" ", 2)[1])


def test_a_socket_that_never_says_hello_is_closed(listener: Listener) -> None:
    with listener.connect() as sock:
        elapsed = seconds_until_closed(sock, TLS_HELLO_LIMIT + SLACK)
    assert elapsed >= TLS_HELLO_LIMIT * 0.9


def test_a_hello_that_trickles_in_is_closed_at_the_hello_limit(listener: Listener) -> None:
    with listener.connect() as sock:
        sock.sendall(b"\x16\x03\x01")  # the start of a TLS record, and then nothing
        elapsed = seconds_until_closed(sock, TLS_HELLO_LIMIT + SLACK)
    assert elapsed >= TLS_HELLO_LIMIT * 0.5


def test_a_handshake_that_stalls_after_the_hello_is_closed(listener: Listener) -> None:
    """The client says hello, gets the server's answer (which asks for a card) and stops, as a
    user who never picks a certificate: the handshake limit, not the hello limit, applies."""
    context = ssl.create_default_context(cafile=str(listener.ca_file))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with listener.connect() as sock:
        start = time.monotonic()
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        sock.sendall(outgoing.read())
        ready, _, _ = select.select([sock], [], [], 5)
        assert ready and sock.recv(65536), "the server did not answer the hello"
        seconds_until_closed(sock, HANDSHAKE_LIMIT + SLACK)
        elapsed = time.monotonic() - start
    assert elapsed >= HANDSHAKE_LIMIT * 0.9, "closed at the hello limit: no time to type a PIN"


def drip(sock: ssl.SSLSocket, head: bytes, trickle: bytes, interval: float) -> bytes:
    """Send ``head``, then ``trickle`` one byte every ``interval`` seconds until the server
    answers; returns the answer (empty if the trickle ran out first)."""
    sock.sendall(head)
    for byte in trickle:
        ready, _, _ = select.select([sock], [], [], interval)
        if ready:
            return read_response(sock, SLACK)
        sock.sendall(bytes([byte]))
    return b""


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n",
        # An endpoint that reads the body before it answers.
        b"POST /saml/sso/post HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n",
    ],
    ids=["header", "body"],
)
def test_a_request_dripping_a_byte_at_a_time_gets_408(listener: Listener, head: bytes) -> None:
    """Each byte comes well within any per-read limit; the whole request has a limit."""
    with listener.tls() as sock:
        start = time.monotonic()
        # Enough trickle to outlast the limit twice over; an X- header or body bytes.
        answer = drip(sock, head, b"X-Slow: " + b"a" * 40, interval=0.25)
        elapsed = time.monotonic() - start
    assert answer, "the server waited for the whole trickle"
    assert status_of(answer) == 408
    assert reason_code(answer.decode("utf-8", "replace")) == "request_timeout"
    assert REQUEST_LIMIT * 0.9 <= elapsed <= REQUEST_LIMIT + SLACK


def test_a_body_still_dripping_after_the_answer_is_cut_at_the_request_limit(
    each_listener: Listener,
) -> None:
    """An endpoint may answer before the body has arrived (here 405: /cert-login takes no
    POST). The rest of the body is still bounded: the connection closes at the limit, and the
    trickle is never read as another request's head (no second answer)."""
    assert REQUEST_LIMIT == HEAD_LIMIT, "one limit for both listeners in this test"
    head = b"POST /cert-login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n"
    answer, closed = b"", False
    with each_listener.tls() as sock:
        sock.sendall(head + b"a" * 10)
        start = time.monotonic()
        sock.settimeout(0.25)
        while not closed and time.monotonic() - start < REQUEST_LIMIT + SLACK:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                try:
                    sock.sendall(b"a")  # one more byte of the body, well within any read limit
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    closed = True
                continue
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            answer += chunk
            closed = not chunk
        elapsed = time.monotonic() - start
    assert closed, "the connection outlived the request limit"
    assert status_of(answer) == 405 and answer.count(b"HTTP/1.1 ") == 1, answer[:300]
    assert elapsed >= REQUEST_LIMIT * 0.9


def test_an_idle_kept_alive_connection_is_closed(listener: Listener) -> None:
    with listener.tls() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        ready, _, _ = select.select([sock], [], [], 10)
        assert ready and sock.recv(65536).startswith(b"HTTP/1.1 200")
        # A second request on the same connection is served as before.
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        ready, _, _ = select.select([sock], [], [], 10)
        assert ready and sock.recv(65536).startswith(b"HTTP/1.1 200")
        elapsed = seconds_until_closed(sock, KEEP_ALIVE_LIMIT + SLACK)
    assert elapsed >= KEEP_ALIVE_LIMIT * 0.9


def test_tls_1_3_session_tickets_leave_with_the_answer(listener: Listener) -> None:
    """After the handshake the listener sends nothing until it answers: its TLS 1.3 session
    tickets (which nothing can resume here) go out with the answer, in one system call."""
    with listener.tls() as sock:
        assert sock.version() == "TLSv1.3"
        readable, _, _ = select.select([sock], [], [], 0.5)
        assert not readable, "the listener sent something of its own after the handshake"
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        ready, _, _ = select.select([sock], [], [], 10)
        assert ready and sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_a_tls_1_2_client_gets_the_servers_finished_and_its_answer(listener: Listener) -> None:
    context = ssl.create_default_context(cafile=str(listener.ca_file))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    # wrap_socket returns once the server's Finished has come: a listener that kept it back
    # would leave the handshake to its limit.
    with context.wrap_socket(listener.connect(), server_hostname="localhost") as sock:
        assert sock.version() == "TLSv1.2"
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        ready, _, _ = select.select([sock], [], [], 10)
        assert ready and sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_a_100_kb_cookie_gets_the_431_page(each_listener: Listener) -> None:
    cookie = b"Cookie: big=" + b"c" * 100_000 + b"\r\n"
    with each_listener.tls() as sock:
        # The answer may come before all was sent; it must still be readable.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /cert-login HTTP/1.1\r\nHost: localhost\r\n" + cookie + b"\r\n")
        answer = read_response(sock, 10)
    assert status_of(answer) == 431
    page = answer.decode("utf-8", "replace")
    assert reason_code(page) == "request_header_too_large"
    assert 'lang="sv"' in page and 'lang="en"' in page
    assert "kakor" in page and "cookies" in page


# --- the main listener (uvicorn with idp.server.http_limits) ------------------------------------


def test_main_listener_closes_a_connection_that_sends_no_request(node: Node) -> None:
    with node.main.tls() as sock:
        elapsed = seconds_until_closed(sock, HEAD_LIMIT + SLACK)
    assert elapsed >= HEAD_LIMIT * 0.9


def test_main_listener_answers_a_dripping_head_with_408(node: Node) -> None:
    with node.main.tls() as sock:
        start = time.monotonic()
        answer = drip(
            sock, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n", b"X-Slow: " + b"a" * 40, 0.25
        )
        elapsed = time.monotonic() - start
    assert answer, "the server waited for the whole trickle"
    assert status_of(answer) == 408
    assert reason_code(answer.decode("utf-8", "replace")) == "request_timeout"
    assert HEAD_LIMIT * 0.9 <= elapsed <= HEAD_LIMIT + SLACK


def test_main_listener_counts_only_the_head_against_the_head_limit(node: Node) -> None:
    """A 200 KB body sent in the same write as its head is a body, not an oversized head; and
    the connection serves a second request after it."""
    body = b"grant_type=authorization_code&code=" + b"c" * 200_000
    head = (
        b"POST /oidc/token HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    with node.main.tls() as sock:
        sock.sendall(head + body)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        answers = read_response(sock, 10)
    # The token endpoint's refusal (no client authentication), then the health answer.
    assert status_of(answers) == 401, answers[:300]
    assert b"invalid_client" in answers
    assert answers.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 200 " in answers

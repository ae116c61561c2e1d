"""A cheap browser for load: raw ``ssl`` sockets, HTTP/1.1 by h11, and regular expressions.

benchmarks/peers.py drives both IdPs with it, so the client's own cost per login is small and
the same for both (the earlier client, httpx with an HTML parser, was a limit of its own).
What a browser does and this one does too:

- a new :class:`Browser` is a new browser: no cookies, no connections, no TLS sessions (Python
  resumes a TLS session only when asked to, and this never asks);
- one kept-alive connection per origin, opened when first needed; the card (the TLS context's
  client certificate) is sent only to a server that asks for one, as a browser with a card in
  the reader;
- cookies by host, ports ignored (as browsers do; the IdP's two origins differ in port only),
  without paths or expiry: every login is a new browser, so nothing expires in between;
- redirects followed; on a page, the IdP's link "SITHS eID på denna enhet" followed; the page
  that posts a ``SAMLResponse`` ends the login (its script would post it to the SP).

Nothing is verified here: the caller verifies every Response it counts (benchmarks/peers.py).
"""

from __future__ import annotations

import contextlib
import html
import re
import socket
import ssl
import urllib.parse
from dataclasses import dataclass, field

import h11

REDIRECTS = (301, 302, 303, 307, 308)
MAX_STEPS = 12
_THIS_DEVICE = re.compile(rb'<a\b[^>]*\bid="method-this-device"[^>]*>')
_HREF = re.compile(rb'\bhref="([^"]*)"')
_SAML_RESPONSE = re.compile(rb'name="SAMLResponse"\s+value="([^"]*)"')
_FORM_ACTION = re.compile(rb'<form\b[^>]*\baction="([^"]*)"')


class LoginFailed(Exception):
    """The IdP answered as no working login would; the message says where."""


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


@dataclass
class Login:
    """A login that reached the page posting to the SP: the form, and every URL requested."""

    acs_url: str
    saml_response: str
    urls: list[str] = field(default_factory=list)


class _Connection:
    def __init__(self, context: ssl.SSLContext, host: str, port: int) -> None:
        raw = socket.create_connection((host, port), timeout=30)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(raw, server_hostname=host)
        self.http = h11.Connection(h11.CLIENT)

    @property
    def reusable(self) -> bool:
        return self.http.our_state is h11.IDLE and self.http.their_state is h11.IDLE

    def get(self, target: bytes, headers: list[tuple[bytes, bytes]]) -> Answer:
        request = h11.Request(method=b"GET", target=target, headers=headers)
        self.sock.sendall(self.http.send(request) + self.http.send(h11.EndOfMessage()))
        status, answer_headers, body = 0, {}, bytearray()
        while True:
            event = self.http.next_event()
            if event is h11.NEED_DATA:
                self.http.receive_data(self.sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                for name, value in event.headers:
                    if name == b"set-cookie":  # kept apart: there may be several
                        answer_headers.setdefault(name, b"")
                        answer_headers[name] += value + b"\n"
                    else:
                        answer_headers[name] = value
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise LoginFailed("the server closed the connection mid-answer")
        if self.http.our_state is h11.DONE and self.http.their_state is h11.DONE:
            self.http.start_next_cycle()
        return Answer(status, answer_headers, bytes(body))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Browser:
    """One browser: cookies and connections of its own. Use as a context manager."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.connections: dict[tuple[str, int], _Connection] = {}
        self.cookies: dict[str, dict[bytes, bytes]] = {}
        self.urls: list[str] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_exc: object) -> None:
        for connection in self.connections.values():
            connection.close()

    def get(self, url: str) -> Answer:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname or "", parts.port or 443
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [(b"Host", parts.netloc.encode()), (b"Accept", b"text/html")]
        jar = self.cookies.get(host)
        if jar:
            headers.append((b"Cookie", b"; ".join(k + b"=" + v for k, v in jar.items())))
        connection = self.connections.get((host, port))
        if connection is None or not connection.reusable:
            if connection is not None:
                connection.close()
            connection = self.connections[(host, port)] = _Connection(self.context, host, port)
        self.urls.append(url)
        answer = connection.get(target.encode(), headers)
        for line in answer.headers.get(b"set-cookie", b"").splitlines():
            name, _, rest = line.partition(b"=")
            self.cookies.setdefault(host, {})[name.strip()] = rest.split(b";", 1)[0]
        return answer

    def login(self, url: str) -> Login:
        """From the SP's redirect URL to the page that posts the Response to the SP."""
        answer = self.get(url)
        for _ in range(MAX_STEPS):
            if answer.status in REDIRECTS:
                url = urllib.parse.urljoin(url, answer.headers[b"location"].decode())
            elif answer.status == 200:
                posted = _SAML_RESPONSE.search(answer.body)
                if posted:
                    action = _FORM_ACTION.search(answer.body)
                    return Login(
                        html.unescape(action.group(1).decode()) if action else "",
                        html.unescape(posted.group(1).decode()),
                        list(self.urls),
                    )
                link = _THIS_DEVICE.search(answer.body)
                href = _HREF.search(link.group(0)) if link else None
                if href is None:
                    raise LoginFailed(f"{_path(url)}: a page without a way on")
                url = urllib.parse.urljoin(url, html.unescape(href.group(1).decode()))
            else:
                raise LoginFailed(f"{_path(url)}: HTTP {answer.status}: {answer.body[:120]!r}")
            answer = self.get(url)
        raise LoginFailed(f"more than {MAX_STEPS} steps")


def _path(url: str) -> str:
    return urllib.parse.urlsplit(url).path

"""Test support: start real servers on loopback, and a browser stand-in over httpx.

Nothing here fakes the IdP: servers run as subprocesses (real uvicorn, the real certificate
listener) and every request crosses a real TLS socket.
"""

from __future__ import annotations

import base64
import os
import random
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import httpx
from defusedxml import ElementTree

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def _ephemeral_ports() -> range:
    """The kernel's range for the local ports of outbound connections."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)  # Linux's default


# Ports picked from below the ephemeral range: a port the kernel hands out for ``bind(0)`` lies
# inside it, where any outbound connection (the tests make thousands) may take it between the
# picking and the server's bind ("address already in use", seen once in a full run).
_EPHEMERAL = _ephemeral_ports()
_PICKABLE = range(max(1024, _EPHEMERAL.start - 12000), _EPHEMERAL.start)
_handed_out: set[int] = set()
# Not the module-level generator: Hypothesis seeds that one inside its tests.
_RANDOM = random.SystemRandom()


def free_port() -> int:
    """A loopback port that nothing listens on now and that this run has not handed out before
    (an earlier test's server may still hold it, or be about to), outside the ephemeral range
    when the kernel leaves room below it."""
    for _ in range(2000):
        if len(_PICKABLE) >= 1000:
            port = _RANDOM.choice(_PICKABLE)
        else:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port found")


@dataclass
class RunningServer:
    process: subprocess.Popen
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_server(
    args: list[str],
    env: dict[str, str],
    ready_url: str,
    ca_file: Path,
    log_path: Path,
    cwd: Path | None = None,
) -> RunningServer:
    """Start a server process and wait until ``ready_url`` answers over TLS."""
    full_env = {**os.environ, **env}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args, env=full_env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{args} exited: {log_path.read_text(errors='replace')}")
        try:
            httpx.get(ready_url, verify=tls_context(ca_file), timeout=2)
            return RunningServer(process, ready_url, log_path)
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{args} did not become ready: {log_path.read_text(errors='replace')}")


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False
    )


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self.links: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": attributes.get("action", ""), "fields": {}})
        elif tag == "input" and self.forms:
            if attributes.get("type") == "radio" and "checked" not in attributes:
                return
            self.forms[-1]["fields"][attributes.get("name", "")] = attributes.get("value", "")
        elif tag == "a" and "id" in attributes:
            self.links[attributes["id"]] = attributes.get("href", "")


def parse_page(html: str) -> _FormParser:
    parser = _FormParser()
    parser.feed(html)
    return parser


def reason_code(html: str) -> str | None:
    match = re.search(r'<code id="reason">([^<]*)</code>', html)
    return match.group(1) if match else None


def tls_context(
    ca_file: Path,
    cert: Path | None = None,
    key: Path | None = None,
    *,
    any_card_key: bool = False,
) -> ssl.SSLContext:
    """A client context trusting ``ca_file``, presenting ``cert``/``key`` when asked.

    ``any_card_key``: present a card whatever its key, as a browser with a smart card does.
    Python's OpenSSL otherwise refuses to load a key under its security level (RSA under 2048
    bits), and the tests of the IdP refusing such cards need them to arrive.
    """
    context = ssl.create_default_context(cafile=str(ca_file))
    if any_card_key:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


@contextmanager
def browser(
    ca_file: Path, card: tuple[Path, Path] | None = None, *, any_card_key: bool = False
) -> Iterator[httpx.Client]:
    """A browser stand-in: one cookie jar; presents ``card`` when a server asks for one."""
    context = tls_context(ca_file, *(card or (None, None)), any_card_key=any_card_key)
    with httpx.Client(verify=context, follow_redirects=False, timeout=30) as client:
        yield client


SAML_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"


def assert_no_success_response(html: str) -> None:
    """Nothing on the page lets anybody in: every SAMLResponse it carries (the way back to the
    SP after a failure) has a non-success status and no assertion."""
    for form in parse_page(html).forms:
        encoded = form["fields"].get("SAMLResponse")
        if encoded is None:
            continue
        root = ElementTree.fromstring(base64.b64decode(encoded))
        top = root.find(
            "{urn:oasis:names:tc:SAML:2.0:protocol}Status/"
            "{urn:oasis:names:tc:SAML:2.0:protocol}StatusCode"
        )
        assert top is not None and top.get("Value") != SAML_SUCCESS
        assert "Assertion" not in base64.b64decode(encoded).decode()
    assert html.count("SAMLResponse") == sum(
        1 for form in parse_page(html).forms if "SAMLResponse" in form["fields"]
    )

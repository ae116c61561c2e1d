"""Complete logins over real sockets, as a browser, a card and the SITHS eID app would make them.

For the multi-node tests and the benchmarks: nothing here knows how the IdP is deployed, only
its public URLs. A login starts at an SP's redirect URL (made by the caller's SP, e.g. pysaml2)
and ends when the IdP's page posts a SAML Response to that SP's ACS URL; the caller verifies
the Response with its SP. Each request's ``X-Request-ID`` answer header is kept, so a test can
find in the node logs which node served which step.

- :func:`card_login`: "SITHS eID på denna enhet" (the card as a TLS client certificate; the
  ``httpx.Client`` must carry the card in its TLS context).
- :func:`start_other_device_login` / :func:`finish_other_device_login`: "SITHS eID på annan
  enhet", with the app started by the page's autostart link; the browser polls ``collect``.
- :class:`PemCard`: a card for :class:`siths_testkit.app_simulator.SithsEidApp` from PEM files
  (the test PKI's card files), signing in this process: quick enough for load.
"""

from __future__ import annotations

import base64
import time
import urllib.parse
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from defusedxml import ElementTree

from siths_testkit.app_simulator.protocol import ECDSA_SHA256, RSA_PKCS1_SHA256


class LoginFailed(Exception):
    """A step did not answer as a working login would; the message names the step."""


@dataclass
class Step:
    path: str
    status: int
    request_id: str


@dataclass
class LoginResult:
    """A login that reached the SP's ACS: the form's action and fields, and every step."""

    acs_url: str
    saml_response: str
    relay_state: str
    steps: list[Step] = field(default_factory=list)


class Page(HTMLParser):
    """The forms (action, fields) and the links (by id) of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.links: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((attributes.get("action", ""), {}))
        elif tag == "input" and self.forms and "name" in attributes:
            self.forms[-1][1][attributes["name"]] = attributes.get("value", "")
        elif tag == "a" and "id" in attributes:
            self.links[attributes["id"]] = attributes.get("href", "")


def parse_page(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


class _Browser:
    """Follows redirects by hand, recording each step."""

    def __init__(self, client: httpx.Client, base_url: str) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.steps: list[Step] = []

    def get(self, url: str) -> httpx.Response:
        if url.startswith("/"):
            url = self.base_url + url
        response = self.client.get(url)
        self.steps.append(
            Step(
                urllib.parse.urlsplit(url).path,
                response.status_code,
                response.headers.get("x-request-id", ""),
            )
        )
        return response

    def follow(self, response: httpx.Response, limit: int = 10) -> httpx.Response:
        for _ in range(limit):
            if response.status_code not in (302, 303):
                return response
            response = self.get(response.headers["location"])
        raise LoginFailed("too many redirects")

    def expect_page(self, response: httpx.Response, what: str) -> Page:
        if response.status_code != 200:
            raise LoginFailed(f"{what}: HTTP {response.status_code}: {response.text[:200]}")
        return parse_page(response.text)

    def result(self, response: httpx.Response) -> LoginResult:
        page = self.expect_page(response, "the answer to the SP")
        if not page.forms or "SAMLResponse" not in page.forms[0][1]:
            raise LoginFailed(f"no SAML Response on the last page: {response.text[:200]}")
        action, fields = page.forms[0]
        return LoginResult(
            action, fields["SAMLResponse"], fields.get("RelayState", ""), list(self.steps)
        )


def card_login(client: httpx.Client, login_url: str, base_url: str) -> LoginResult:
    """SP redirect → chooser → certificate login (the client's TLS card) → Response page."""
    browser = _Browser(client, base_url)
    chooser = browser.expect_page(browser.follow(browser.get(login_url)), "the chooser")
    href = chooser.links.get("method-this-device")
    if not href:
        raise LoginFailed("the chooser offers no certificate login")
    return browser.result(browser.follow(browser.get(href)))


def sso_login(client: httpx.Client, login_url: str, base_url: str) -> LoginResult:
    """A login answered from the browser's SSO session: no chooser, straight to the SP."""
    browser = _Browser(client, base_url)
    return browser.result(browser.follow(browser.get(login_url)))


@dataclass
class OtherDeviceLogin:
    """A browser looking at the QR page of an order."""

    browser: _Browser
    reference: str
    auto_start_token: str


def start_other_device_login(
    client: httpx.Client, login_url: str, base_url: str
) -> OtherDeviceLogin:
    """SP redirect → chooser → "SITHS eID på annan enhet": the order exists and waits."""
    browser = _Browser(client, base_url)
    chooser = browser.expect_page(browser.follow(browser.get(login_url)), "the chooser")
    href = chooser.links.get("method-other-device")
    if not href:
        raise LoginFailed("the chooser offers no other-device login")
    page = browser.expect_page(browser.get(href), "the QR page")
    autostart = page.links.get("autostart", "")
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(autostart).query).get("autostarttoken")
    if not token:
        raise LoginFailed("the QR page has no autostart link")
    reference = urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)["ref"][0]
    return OtherDeviceLogin(browser, reference, token[0])


def collect(login: OtherDeviceLogin) -> tuple[dict, float]:
    """One poll of ``collect``: its JSON and how long it took (seconds)."""
    started = time.perf_counter()
    response = login.browser.get(f"/login/other-device/collect?ref={login.reference}")
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise LoginFailed(f"collect: HTTP {response.status_code}: {response.text[:200]}")
    return response.json(), elapsed


def finish_other_device_login(login: OtherDeviceLogin, view: dict) -> LoginResult:
    """After collect said ``complete``: follow ``next`` to the Response page."""
    if view.get("status") != "complete" or not view.get("next"):
        raise LoginFailed(f"the order is not complete: {view}")
    return login.browser.result(login.browser.follow(login.browser.get(view["next"])))


class PemCard:
    """A card from PEM files: its certificate, and signatures by its key in this process.

    Implements :class:`siths_testkit.app_simulator.token.Card`. The key is loaded once (loading
    an RSA key costs tens of milliseconds).
    """

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self._certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError("a card key is RSA or EC")
        self._key = key

    def certificate(self) -> x509.Certificate:
        return self._certificate

    def sign(self, data: bytes) -> tuple[str, bytes]:
        if isinstance(self._key, rsa.RSAPrivateKey):
            return RSA_PKCS1_SHA256, self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return ECDSA_SHA256, self._key.sign(data, ec.ECDSA(hashes.SHA256()))


def response_summary(saml_response: str) -> tuple[str, str]:
    """(InResponseTo, top-level StatusCode) of a base64 SAML Response, read without verifying
    anything: for load loops that verify a sample with a real SP afterwards."""
    root = ElementTree.fromstring(base64.b64decode(saml_response))
    namespace = "{urn:oasis:names:tc:SAML:2.0:protocol}"
    status = root.find(f"{namespace}Status/{namespace}StatusCode")
    return root.get("InResponseTo", ""), status.get("Value", "") if status is not None else ""

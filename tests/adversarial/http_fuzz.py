"""Malformed HTTP requests, and what no answer to one may ever be.

Strategies build requests from what the endpoints read (SAML binding parameters, OIDC
parameters, the app API's JSON fields, the pages' form fields), spelled the ways an attacker
would spell them: percent-encoded names (``SAML%52equest``), duplicates, ``+`` and ``%20``,
broken percent-escapes, empty and huge values, bad base64, deflate bombs, DTDs and XML of the
wrong kind. :func:`check_answer` holds what must never come back: a server error, a dropped
connection, a traceback, a hang, a SAML Response with a Success status, an OIDC code or token.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
import zlib
from dataclasses import dataclass, field

import httpx
from defusedxml import ElementTree
from fastapi.routing import iter_route_contexts
from hypothesis import strategies as st
from starlette.routing import BaseRoute, Mount

from tests.adversarial.figures import FIGURES

# Every name any endpoint of the IdP or mock Treserva reads.
PARAMETER_NAMES = (
    "SAMLRequest",
    "SAMLResponse",
    "RelayState",
    "SigAlg",
    "Signature",
    "client_id",
    "client_secret",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "code",
    "grant_type",
    "code_verifier",
    "code_challenge",
    "code_challenge_method",
    "client_assertion",
    "client_assertion_type",
    "refresh_token",
    "id_token_hint",
    "post_logout_redirect_uri",
    "prompt",
    "max_age",
    "request",
    "request_uri",
    "login_hint",
    "claims",
    "access_token",
    "ref",
    "method",
    "csrf",
    "order",
    "orderRef",
    "next",
    "lang",
    "windows_account",
    "password",
    "hsa_id",
    "target",
    "error",
)
JSON_FIELDS = (
    "qrCode",
    "autoStartToken",
    "orderRef",
    "signToken",
    "signatureAlgorithm",
    "signature",
    "certificates",
)
COOKIE_NAMES = ("idp_sso", "idp_browser", "session", "treserva_session", "csrf")

XML_PAYLOADS = (
    # A DTD with an external entity, and the billion laughs.
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    '<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_a" '
    'Version="2.0" IssueInstant="2024-01-01T00:00:00Z">&x;</samlp:AuthnRequest>',
    '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;'
    '&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;'
    '&c;&c;&c;&c;&c;&c;">]><l>&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;</l>',
    # Wrong roots, and a Response where a request belongs (and the reverse).
    "<html><body>hi</body></html>",
    '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_r" '
    'Version="2.0" IssueInstant="2024-01-01T00:00:00Z"><samlp:Status><samlp:StatusCode '
    'Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status></samlp:Response>',
    '<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
    'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_x" Version="2.0" '
    'IssueInstant="2024-01-01T00:00:00Z" ForceAuthn="1" IsPassive="1">'
    "<saml:Issuer>https://sp.example.test/metadata</saml:Issuer></samlp:AuthnRequest>",
    '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
    'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_l" Version="2.0" '
    'IssueInstant="2024-01-01T00:00:00Z"><saml:Issuer>https://sp.example.test/metadata'
    "</saml:Issuer><saml:NameID>x</saml:NameID></samlp:LogoutRequest>",
    "<a><b>" * 200 + "</b></a>" * 200,
    "not xml at all <<<",
    "\ufeff<?xml version='1.0' encoding='utf-16'?><x/>",
)


def deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


# 20 MB of spaces deflate to ~20 KB (a URL can still carry it): a bomb for any reader that
# inflates without a limit.
DEFLATE_BOMB = base64.b64encode(deflate_raw(b" " * (20 * 1024 * 1024))).decode("ascii")
# httpx refuses longer URLs; the servers' own limits are well below.
MAX_QUERY_LENGTH = 60_000


def saml_encodings(xml: str) -> list[str]:
    """``xml`` as the Redirect binding (deflate + base64) and the POST binding (base64) send it."""
    data = xml.encode("utf-8")
    return [base64.b64encode(deflate_raw(data)).decode(), base64.b64encode(data).decode()]


SAML_VALUES = [value for xml in XML_PAYLOADS for value in saml_encodings(xml)]

# A JWT-shaped value with alg none, and one with a header naming a key that is nowhere.
FAKE_JWTS = (
    base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    + "."
    + base64.urlsafe_b64encode(b'{"sub":"x","iss":"x","aud":"x","exp":9999999999}')
    .rstrip(b"=")
    .decode()
    + ".",
    "eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vd2hlcmUifQ.eyJzdWIiOiJ4In0.c2ln",
)

text_values = st.text(max_size=60)
special_values = st.sampled_from(
    [
        "",
        " ",
        "+",
        "%",
        "%ZZ",
        "%00",
        "%C3%28",
        "\x00",
        "null",
        "true",
        "1",
        "-1",
        "99999999999999999999999",
        "../../../../etc/passwd",
        "javascript:alert(1)",
        "https://evil.example/cb",
        "https://localhost@evil.example/",
        "openid profile email",
        "code",
        "authorization_code",
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "!!!not base64!!!",
        "QUJD",  # "ABC": base64 of something that is neither deflate nor XML
        DEFLATE_BOMB,
        *FAKE_JWTS,
    ]
)
huge_values = st.integers(min_value=1_000, max_value=30_000).map(lambda n: "A" * n)
values = st.one_of(
    text_values, special_values, st.sampled_from(SAML_VALUES), huge_values, st.binary(max_size=40)
)


@st.composite
def parameter_names(draw: st.DrawFn) -> str:
    """A known name, maybe with some characters percent-encoded or its case changed, or junk."""
    name = draw(st.sampled_from(PARAMETER_NAMES) | st.text(min_size=0, max_size=12))
    style = draw(st.sampled_from(["plain", "plain", "encoded", "case", "encoded"]))
    if style == "case":
        return urllib.parse.quote(name.swapcase(), safe="")
    if style == "encoded" and name:
        positions = draw(st.sets(st.integers(min_value=0, max_value=len(name) - 1), min_size=1))
        return "".join(
            f"%{ord(ch):02{draw(st.sampled_from('Xx'))}}"
            if i in positions and ord(ch) < 128
            else urllib.parse.quote(ch, safe="")
            for i, ch in enumerate(name)
        )
    return urllib.parse.quote(name, safe="")


def encode_value(value: str | bytes, plus_for_space: bool) -> str:
    if isinstance(value, bytes):
        return urllib.parse.quote_from_bytes(value, safe="")
    if (value.startswith("%") or value == "+") and value.isascii() and value.isprintable():
        return value  # an escape (broken or not) sent as it is
    if plus_for_space:
        return urllib.parse.quote_plus(value, safe="")
    return urllib.parse.quote(value, safe="")


@st.composite
def raw_queries(draw: st.DrawFn) -> str:
    """A query string: name=value pairs, maybe duplicated, maybe with no ``=`` or empty names."""
    pairs = draw(st.lists(st.tuples(parameter_names(), values), max_size=6))
    if pairs and draw(st.booleans()):
        pairs.append(draw(st.sampled_from(pairs)))  # the same parameter twice
    plus = draw(st.booleans())
    parts = [f"{name}={encode_value(value, plus)}" for name, value in pairs]
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        parts.append(draw(st.sampled_from(["", "=", "&&", "noequals", "=novalue", ";a=b"])))
    while len("&".join(parts)) > MAX_QUERY_LENGTH:
        parts.pop(0)
    return "&".join(parts)


def _json_values() -> st.SearchStrategy[object]:
    texts = st.one_of(text_values, special_values, st.sampled_from(SAML_VALUES), huge_values)
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts)
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=12,
    )


@dataclass
class FuzzRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def describe(self) -> str:
        """The request in at most a few hundred characters (huge values are cut)."""
        body = "" if self.body is None else f" body={_cut(repr(self.body))}"
        headers = {name: _cut(value) for name, value in self.headers.items()}
        return f"{self.method} {self.path}?{_cut(self.query)} headers={headers}{body}"

    __repr__ = describe


def _cut(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} chars)"


@st.composite
def bodies(draw: st.DrawFn) -> tuple[dict[str, str], bytes | None]:
    kind = draw(st.sampled_from(["none", "form", "form", "json", "json", "multipart", "raw"]))
    if kind == "none":
        return {}, None
    if kind == "form":
        return {"Content-Type": "application/x-www-form-urlencoded"}, draw(raw_queries()).encode()
    if kind == "json":
        if draw(st.booleans()):
            document = draw(_json_values())
        else:
            document = draw(st.dictionaries(st.sampled_from(JSON_FIELDS), _json_values()))
        return {"Content-Type": "application/json"}, json.dumps(document).encode()
    if kind == "multipart":
        boundary = "fuzzboundary"
        name = draw(st.sampled_from(PARAMETER_NAMES))
        data = draw(st.binary(max_size=200))
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="x"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body
    content_type = draw(
        st.sampled_from(
            ["application/octet-stream", "text/xml", "application/json", "multipart/form-data"]
        )
    )
    return {"Content-Type": content_type}, draw(st.binary(max_size=400))


@st.composite
def extra_headers(draw: st.DrawFn) -> dict[str, str]:
    headers: dict[str, str] = {}
    header_text = st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80
    )
    if draw(st.booleans()):
        cookies = draw(st.lists(st.tuples(st.sampled_from(COOKIE_NAMES), header_text), max_size=3))
        headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies)
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        headers["Authorization"] = draw(
            st.sampled_from(["Basic ", "Bearer ", "Basic Og==", "Basic !!!", "Bearer a.b.c"])
        ) + draw(header_text)
    if draw(st.integers(min_value=0, max_value=5)) == 0:
        # The proxy-mode header, from an address that is not a trusted proxy: ignored.
        headers["X-SSL-Client-Cert"] = draw(header_text)
    # Surrounding whitespace is not a header value any HTTP client sends.
    return {name: value.strip() for name, value in headers.items()}


@dataclass(frozen=True)
class Endpoint:
    path: str
    methods: tuple[str, ...]


def endpoints_of(routes: list[BaseRoute]) -> list[Endpoint]:
    """Every path and method of an app's routes, through included routers (a mount gives one
    path below it)."""
    found: list[Endpoint] = []
    for context in iter_route_contexts(routes):
        if isinstance(context.original_route, Mount):
            found.append(Endpoint(context.path + "/style.css", ("GET",)))
        elif context.methods:
            found.append(Endpoint(context.path, tuple(sorted(set(context.methods) - {"HEAD"}))))
    return found


@st.composite
def requests_for(draw: st.DrawFn, endpoint: Endpoint) -> FuzzRequest:
    method = draw(st.sampled_from([*endpoint.methods, *endpoint.methods, "PUT", "OPTIONS"]))
    path = re.sub(
        r"\{[^}]+\}",
        lambda _: urllib.parse.quote(draw(st.text(min_size=1, max_size=20)), safe=""),
        endpoint.path,
    )
    headers = draw(extra_headers())
    body = None
    if method in ("POST", "PUT"):
        body_headers, body = draw(bodies())
        headers.update(body_headers)
    return FuzzRequest(method, path, draw(raw_queries()), headers, body)


def send(client: httpx.Client, base_url: str, request: FuzzRequest, area: str) -> httpx.Response:
    """Send ``request``; a dropped connection or a hang fails with the request that caused it."""
    FIGURES.tried(area)
    url = httpx.URL(base_url + request.path, query=request.query.encode("ascii"))
    try:
        return client.request(request.method, url, headers=request.headers, content=request.body)
    except httpx.TimeoutException as exc:
        FIGURES.server_error(area, f"hang ({type(exc).__name__}): {request.describe()}")
        raise AssertionError(f"no answer in time: {request.describe()}") from exc
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        FIGURES.server_error(area, f"dropped ({exc}): {request.describe()}")
        raise AssertionError(f"connection dropped without an answer: {request.describe()}") from exc


SAML_RESPONSE_FIELD = re.compile(r'name="SAMLResponse"\s+value="([^"]*)"')
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"


def saml_statuses(html: str) -> list[str]:
    """The top-level StatusCode of every SAMLResponse form field on a page."""
    statuses = []
    for encoded in SAML_RESPONSE_FIELD.findall(html):
        xml = base64.b64decode(encoded.replace("&#43;", "+").replace("&#x2B;", "+"))
        root = ElementTree.fromstring(xml)
        code = root.find(
            "{urn:oasis:names:tc:SAML:2.0:protocol}Status/"
            "{urn:oasis:names:tc:SAML:2.0:protocol}StatusCode"
        )
        statuses.append("" if code is None else code.get("Value", ""))
    return statuses


def check_answer(answer: httpx.Response, request: FuzzRequest, area: str) -> None:
    """What no answer to unauthenticated, malformed input may be."""
    what = request.describe()
    if answer.status_code >= 500:
        FIGURES.server_error(area, f"{answer.status_code}: {what}")
    assert answer.status_code < 500, f"{answer.status_code} for {what}"
    text = answer.text
    assert "Traceback (most recent call last)" not in text, what
    assert SUCCESS not in saml_statuses(text), f"a Success SAML Response for {what}"
    location = answer.headers.get("location", "")
    issued = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query) | urllib.parse.parse_qs(
        urllib.parse.urlsplit(location).fragment
    )
    for name in ("code", "access_token", "id_token"):
        assert name not in issued, f"{name} issued in a redirect for {what}: {location}"
    if "json" in answer.headers.get("content-type", ""):
        for name in ("access_token", "id_token", "refresh_token"):
            assert f'"{name}"' not in text, f"{name} issued for {what}: {text[:300]}"


TRACEBACK_MARKERS = ("Traceback (most recent call last)", "Exception in ASGI application")


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit)\b.*$", re.MULTILINE)


def assert_no_traceback(log: str, what: str) -> None:
    for marker in TRACEBACK_MARKERS:
        if marker in log:
            start = log.index(marker)
            raised = EXCEPTION_LINE.findall(log[start:])
            FIGURES.server_error(what, f"traceback in the server log: {raised[-1:]}")
            raise AssertionError(
                f"{what}: traceback in the server log ({raised}):\n{log[start:][:2000]}"
            )

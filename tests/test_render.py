"""Rendering pages and writing cookies (idp.web.render): what every page relies on."""

from __future__ import annotations

import re
import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import Response

from idp.web.render import page_language, render_page, set_cookie

pytestmark = pytest.mark.unit
CHOOSER = {
    "client_name": "Treserva",
    "this_device_url": "https://x/cert-login?ref=r1",
    "reference": "r1",
}


def _request(path: str, query: bytes = b"", method: str = "GET", cookie: bytes = b"") -> Request:
    headers = [(b"cookie", cookie)] if cookie else []
    return Request(
        {"type": "http", "method": method, "path": path, "query_string": query, "headers": headers}
    )


def test_cookie_header_is_written_with_every_attribute() -> None:
    response = Response()
    set_cookie(response, "__Host-idp-sso", "abc_DEF-123", None)
    set_cookie(response, "__Host-idp-lang", "en", 3600)
    cookies = [value.decode() for name, value in response.raw_headers if name == b"set-cookie"]
    assert cookies == [
        "__Host-idp-sso=abc_DEF-123; Path=/; SameSite=None; Secure; HttpOnly",
        "__Host-idp-lang=en; Max-Age=3600; Path=/; SameSite=None; Secure; HttpOnly",
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("__Host-idp-sso", "a\r\nSet-Cookie: evil=1"),
        ("__Host-idp-sso", "a; Domain=evil.example"),
        ("__Host-idp-sso", 'a"b'),
        ("__Host-idp-sso", "å"),
        ("bad name", "a"),
        ("", "a"),
    ],
)
def test_a_cookie_that_could_end_or_change_the_header_is_refused(name: str, value: str) -> None:
    response = Response()
    with pytest.raises(ValueError):
        set_cookie(response, name, value, None)
    assert not [n for n, _ in response.raw_headers if n == b"set-cookie"]


def test_a_page_shown_as_the_answer_to_another_request_switches_language_at_its_own_address() -> (
    None
):
    page = render_page(
        _request("/saml/sso/redirect", b"SAMLRequest=abc&SigAlg=x"),
        "idp/login.html",
        {
            "client_name": "Treserva",
            "this_device_url": "https://x/cert-login?ref=r1",
            "reference": "r1",
        },
        address="/login?ref=r1",
    )
    html = page.body.decode()
    assert 'id="language-switch" href="/login?ref=r1&amp;lang=en"' in html
    assert "SAMLRequest" not in html
    nonce = re.search(r"'nonce-([^']+)'", page.headers["content-security-policy"]).group(1)
    assert f'<script nonce="{nonce}">history.replaceState(null, "", "/login?ref=r1");' in html
    assert page.headers["cache-control"] == "no-store"


def test_a_page_at_its_own_address_has_no_address_script_and_keeps_its_query() -> None:
    page = render_page(
        _request("/login", b"ref=r1&lang=en", cookie=b"__Host-idp-lang=sv"),
        "idp/login.html",
        {
            "client_name": "Treserva",
            "this_device_url": "https://x/cert-login?ref=r1",
            "reference": "r1",
        },
    )
    html = page.body.decode()
    assert "history.replaceState" not in html
    assert 'href="/login?ref=r1&amp;lang=sv"' in html
    assert '<html lang="en">' in html
    # Chosen now with ?lang=: remembered.
    assert (
        b"set-cookie",
        b"__Host-idp-lang=en; Max-Age=31536000; Path=/; SameSite=None; Secure; HttpOnly",
    ) in page.raw_headers


def test_a_post_offers_no_language_switch() -> None:
    page = render_page(
        _request("/login", method="POST"),
        "idp/login.html",
        {"client_name": "T", "this_device_url": "https://x/cert-login?ref=r", "reference": "r"},
    )
    assert 'id="language-switch"' not in page.body.decode()


@pytest.mark.parametrize(
    ("query", "cookie", "expected"),
    [
        (b"", b"", ("sv", False)),
        (b"lang=en", b"", ("en", True)),
        (b"lang=en", b"__Host-idp-lang=en", ("en", False)),
        (
            b"SAMLRequest=fZJBb%2B&RelayState=x&SigAlg=a&Signature=b%3D%3D&lang=en",
            b"",
            ("en", True),
        ),
        (b"lang=en&lang=sv", b"__Host-idp-lang=en", ("sv", True)),
        (b"xlang=en&flang=en", b"__Host-idp-lang=en", ("en", False)),
        (b"lang=fr", b"", ("sv", False)),
        (b"lang=", b"__Host-idp-lang=en", ("en", False)),
        (b"ref=lang%3Den", b"", ("sv", False)),
    ],
)
def test_the_page_language_is_asked_for_by_lang_or_kept_in_its_cookie(
    query: bytes, cookie: bytes, expected: tuple[str, bool]
) -> None:
    assert page_language(_request("/login", query, cookie=cookie)) == expected


_PLAIN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", max_size=6)


@given(
    parameters=st.lists(
        st.tuples(
            st.sampled_from(["lang", "ref", "xlang", "langs", *"ab"]) | _PLAIN,
            st.sampled_from(["sv", "en", "", "fr"]) | _PLAIN,
        ),
        max_size=6,
    )
)
def test_lang_is_read_as_starlette_reads_the_query(parameters: list[tuple[str, str]]) -> None:
    """For the query strings the language switch writes, reading ``lang`` from the raw query
    gives what Starlette's parsed query parameters give."""
    request = _request("/login", urllib.parse.urlencode(parameters).encode())
    asked = request.query_params.get("lang", "")
    assert page_language(request)[0] == (asked if asked in ("sv", "en") else "sv")

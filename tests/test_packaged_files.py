"""The IdP's static files, from memory (idp.web.packaged_files), over the running IdP's sockets."""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from idp.app import STATIC_DIR
from idp.web.packaged_files import PackagedFiles
from tests.conftest import IdpUnderTest
from tests.helpers.support import tls_context

STYLE = STATIC_DIR / "style.css"


@pytest.fixture(scope="module")
def client(idp: IdpUnderTest) -> Iterator[httpx.Client]:
    with httpx.Client(verify=tls_context(idp.ca_file), timeout=10) as client:
        yield client


@pytest.mark.parametrize("origin", ["base_url", "cert_login_url"])
@pytest.mark.parametrize("name", ["style.css", "other_device.js"])
def test_each_file_is_served_as_it_is_on_disk(
    idp: IdpUnderTest, client: httpx.Client, origin: str, name: str
) -> None:
    answer = client.get(f"{getattr(idp, origin)}/static/{name}")
    assert answer.status_code == 200
    assert answer.content == (STATIC_DIR / name).read_bytes()
    expected_type = "text/css" if name.endswith(".css") else "text/javascript"
    assert answer.headers["content-type"] == f"{expected_type}; charset=utf-8"
    assert answer.headers["content-length"] == str(len(answer.content))
    assert answer.headers["etag"].startswith('"') and answer.headers["etag"].endswith('"')
    modified = email.utils.parsedate_to_datetime(answer.headers["last-modified"])
    assert int(modified.timestamp()) == int((STATIC_DIR / name).stat().st_mtime)


def test_head_has_the_headers_and_no_body(idp: IdpUnderTest, client: httpx.Client) -> None:
    answer = client.head(f"{idp.base_url}/static/style.css")
    assert answer.status_code == 200 and answer.content == b""
    assert answer.headers["content-length"] == str(STYLE.stat().st_size)


def test_a_copy_the_browser_has_is_answered_with_304(
    idp: IdpUnderTest, client: httpx.Client
) -> None:
    url = f"{idp.base_url}/static/style.css"
    first = client.get(url)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    for headers in (
        {"If-None-Match": etag},
        {"If-None-Match": f'"other", W/{etag}'},
        {"If-None-Match": "*"},
        {"If-Modified-Since": modified},
    ):
        again = client.get(url, headers=headers)
        assert again.status_code == 304 and again.content == b"", headers
        assert again.headers["etag"] == etag, headers
    # Another copy, a stale date, a date that is not one, and If-None-Match taking precedence
    # over a date that would match: the file again.
    for headers in (
        {"If-None-Match": '"another"'},
        {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
        {"If-Modified-Since": "yesterday"},
        {"If-None-Match": '"another"', "If-Modified-Since": modified},
    ):
        again = client.get(url, headers=headers)
        assert again.status_code == 200 and again.content == STYLE.read_bytes(), headers


@pytest.mark.parametrize(
    "path",
    [
        "/static/",
        "/static/missing.css",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/static//etc/passwd",
        "/static/style.css/",
        "/static/STYLE.CSS",
        "/static/style.css%00",
    ],
)
def test_nothing_else_is_served(idp: IdpUnderTest, client: httpx.Client, path: str) -> None:
    answer = client.get(f"{idp.base_url}{path}")
    assert answer.status_code == 404, (path, answer.status_code)
    assert "text/html" in answer.headers["content-type"]  # the IdP's own page


def test_other_methods_are_refused(idp: IdpUnderTest, client: httpx.Client) -> None:
    answer = client.post(f"{idp.base_url}/static/style.css", content=b"x")
    assert answer.status_code == 405


def test_files_are_read_once_at_start_up(tmp_path: Path) -> None:
    """What a node serves is what it read at start-up, never a path the request names."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.css").write_text("a {}", encoding="utf-8")
    files = PackagedFiles(tmp_path)
    (tmp_path / "sub" / "a.css").write_text("changed", encoding="utf-8")
    (tmp_path / "b.css").write_text("new", encoding="utf-8")
    sent: list[dict] = []

    async def serve(name: str) -> None:
        async def receive() -> dict:
            return {"type": "http.request", "body": b""}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "headers": [], "path_params": {"name": name}}
        await files(scope, receive, send)

    asyncio.run(serve("sub/a.css"))
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"a {}"
    with pytest.raises(Exception, match="404"):
        asyncio.run(serve("b.css"))

"""The IdP's static files (the style sheet, the QR page's script), served from memory.

Starlette's ``StaticFiles`` looks the file up, stats and reads it on every request, each step in
a worker thread: 0.8 ms of server CPU per request on the development machine, twice what
``/healthz`` costs through the same middleware, and a fresh browser fetches the style sheet
from both of the IdP's origins during a login. These files ship with the package and change only
with a release, so they are read once at start-up and a request is a dictionary lookup: no
path from the request ever reaches the file system.

Callers may rely on: ``GET`` and ``HEAD`` of ``/static/<name>`` for each file under the
directory (subfolders included); a strong ETag from the content (the same on every node) and
``Last-Modified`` from the file, with ``If-None-Match`` (or, without it, ``If-Modified-Since``)
answered by 304; any other name is the app's 404 page.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import Receive, Scope, Send


@dataclass(frozen=True)
class PackagedFile:
    body: bytes
    etag: bytes
    modified: dt.datetime
    headers: list[tuple[bytes, bytes]]
    # The same without content-length: a 304's.
    unchanged_headers: list[tuple[bytes, bytes]]

    @classmethod
    def read(cls, path: Path) -> PackagedFile:
        body = path.read_bytes()
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'.encode()
        # Whole seconds: HTTP dates have no finer resolution.
        modified = dt.datetime.fromtimestamp(int(path.stat().st_mtime), dt.UTC)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type.endswith("javascript"):
            content_type += "; charset=utf-8"
        unchanged_headers = [
            (b"content-type", content_type.encode()),
            (b"etag", etag),
            (b"last-modified", email.utils.format_datetime(modified, usegmt=True).encode()),
        ]
        headers = [(b"content-length", str(len(body)).encode()), *unchanged_headers]
        return cls(body, etag, modified, headers, unchanged_headers)

    def unchanged_for(self, request_headers: dict[bytes, bytes]) -> bool:
        """Whether the client's copy is this one (RFC 9110 §13.2.2: If-None-Match first).
        Not ``StaticFiles.is_not_modified``: a method of the class this replaces, on Starlette
        ``Headers`` made per request, and it does not take ``If-None-Match: *``."""
        if_none_match = request_headers.get(b"if-none-match")
        if if_none_match is not None:
            tags = [tag.strip().removeprefix(b"W/") for tag in if_none_match.split(b",")]
            return b"*" in tags or self.etag in tags
        if_modified_since = request_headers.get(b"if-modified-since")
        if if_modified_since is None:
            return False
        try:
            since = email.utils.parsedate_to_datetime(if_modified_since.decode("latin-1"))
        except (TypeError, ValueError, IndexError):
            return False  # not a date: the condition is ignored
        return since.tzinfo is not None and self.modified <= since


class PackagedFiles:
    """An ASGI app answering ``/static/{name:path}`` from the files read at construction."""

    def __init__(self, directory: Path) -> None:
        self._files = {
            path.relative_to(directory).as_posix(): PackagedFile.read(path)
            for path in sorted(directory.rglob("*"))
            if path.is_file()
        }

    def route(self) -> Route:
        return Route("/static/{name:path}", self, methods=["GET", "HEAD"], name="static")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._files.get(scope["path_params"]["name"])
        if found is None:
            raise HTTPException(status_code=404)
        request_headers = dict(scope["headers"])
        if found.unchanged_for(request_headers):
            headers = found.unchanged_headers
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": found.headers})
        body = b"" if scope["method"] == "HEAD" else found.body
        await send({"type": "http.response.body", "body": body})

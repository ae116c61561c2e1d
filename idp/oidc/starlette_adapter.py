"""authlib's ``AuthorizationServer`` on Starlette: the one place the two meet.

authlib ships server integrations for Flask and Django only. This is the same shape as
``authlib.integrations.flask_oauth2``: ``create_oauth2_request``, ``create_json_request``,
``handle_response`` and ``send_signal``, with one difference that matters: authlib is
synchronous and Starlette reads request bodies asynchronously, so the body is read first, on the
event loop (:func:`read_oauth2_request`), and the server then works on that finished request in
a worker thread. Nothing here knows about the IdP.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import JsonPayload, JsonRequest, OAuth2Payload, OAuth2Request
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response

MAX_FORM_FIELDS = 40


class StarletteOAuth2Payload(OAuth2Payload):
    """The request's parameters: the query for GET, the form body for POST (never both, so a
    query parameter cannot override what the client put in the body)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in items:
            self._datalist[key].append(value)
        # First value wins; authlib refuses repeated protocol parameters via ``datalist``.
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class StarletteOAuth2Request(OAuth2Request):
    """An already-read HTTP request in authlib's terms, plus the cookies for logout."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        *,
        query: list[tuple[str, str]],
        form: list[tuple[str, str]],
        cookies: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        # First value wins everywhere, as in the payload: authlib reads some parameters from
        # ``form`` and others from ``payload``, and both must see the same value.
        self._args = _first_values(query)
        self._form = _first_values(form)
        self.cookies: Mapping[str, str] = dict(cookies or {})
        self.payload = StarletteOAuth2Payload(form if method == "POST" else query)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


def _first_values(items: list[tuple[str, str]]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in items:
        values.setdefault(key, value)
    return values


def repeated_parameters(request: OAuth2Request) -> list[str]:
    """The names of the request's parameters (query for GET, form for POST) given more than
    once: RFC 6749 section 3.1 and 3.2 say a parameter MUST NOT be repeated."""
    return [name for name, values in request.payload.datalist.items() if len(values) > 1]


def is_form_encoded(request: OAuth2Request) -> bool:
    """Whether the body is ``application/x-www-form-urlencoded`` (parameters of any other body
    type are not OAuth parameters: RFC 6749 section 3.2, RFC 6750 section 2.2)."""
    content_type = request.headers.get("content-type") or ""
    return content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded"


class StarletteJsonPayload(JsonPayload):
    def __init__(self, data: Any) -> None:
        self._data = data

    @property
    def data(self) -> Any:
        return self._data


class StarletteJsonRequest(JsonRequest):
    def __init__(self, method: str, uri: str, headers: Mapping[str, str], data: Any) -> None:
        super().__init__(method, uri, headers)
        self.payload = StarletteJsonPayload(data)


def public_uri(request: Request, public_base_url: str) -> str:
    """The URL the client used, rebuilt on the configured public base URL: behind a proxy the
    ASGI scope sees plain http and an internal host, and authlib refuses non-https URIs."""
    query = request.url.query
    return f"{public_base_url.rstrip('/')}{request.url.path}" + (f"?{query}" if query else "")


async def read_oauth2_request(request: Request, public_base_url: str) -> StarletteOAuth2Request:
    """Read the whole request (the form body for POST) so authlib can run without awaiting.

    A body that cannot be read as a form (a broken or file-carrying multipart body) carries no
    parameters: the endpoint then judges the request without them, as it would one with an
    empty body; the token and userinfo endpoints refuse any body not form-encoded."""
    form: list[tuple[str, str]] = []
    if request.method == "POST":
        try:
            data = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
        except (HTTPException, MultiPartException):
            data = FormData()
        form = [(key, value) for key, value in data.multi_items() if isinstance(value, str)]
    return StarletteOAuth2Request(
        request.method,
        public_uri(request, public_base_url),
        request.headers,
        query=list(request.query_params.multi_items()),
        form=form,
        cookies=request.cookies,
    )


async def read_json_request(request: Request, public_base_url: str) -> StarletteJsonRequest:
    body = await request.body()
    return StarletteJsonRequest(
        request.method,
        public_uri(request, public_base_url),
        request.headers,
        json.loads(body) if body else None,
    )


class StarletteAuthorizationServer(AuthorizationServer):
    """An authlib ``AuthorizationServer`` whose requests are Starlette requests read with
    :func:`read_oauth2_request` and whose responses are Starlette responses.

    Callers rely on: every authlib entry point (``create_token_response``,
    ``create_endpoint_response``, …) accepts a :class:`StarletteOAuth2Request` and returns a
    :class:`starlette.responses.Response`; those calls block, so run them in a worker thread.
    Signals (``after_authenticate_client``, ``after_revoke_token``) go to handlers registered
    with :meth:`connect_signal`, like the Flask integration's blinker signals.
    """

    def __init__(self, scopes_supported: list[str] | None = None) -> None:
        super().__init__(scopes_supported=scopes_supported)
        self._signal_handlers: dict[str, list[Callable[..., None]]] = defaultdict(list)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        # A raw Starlette request would need an await to read its body: refuse loudly.
        raise TypeError("read the request with read_oauth2_request() first")

    def create_json_request(self, request: Any) -> JsonRequest:
        if isinstance(request, JsonRequest):
            return request
        raise TypeError("read the request with read_json_request() first")

    def handle_response(
        self, status_code: int, payload: Any, headers: list[tuple[str, str]]
    ) -> Response:
        header_map = dict(headers)
        if isinstance(payload, dict):
            payload = orjson.dumps(payload)
            header_map.setdefault("Content-Type", "application/json")
        return Response(content=payload or b"", status_code=status_code, headers=header_map)

    def connect_signal(self, name: str, handler: Callable[..., None]) -> None:
        self._signal_handlers[name].append(handler)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        for handler in self._signal_handlers.get(name, ()):
            handler(self, *args, **kwargs)

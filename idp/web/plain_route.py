"""``PlainRoute``: an API route whose endpoint takes the request alone and is called directly.

FastAPI solves an endpoint's parameters on every request, and on the way parses the query
string, the headers and the cookies whether the endpoint declares any or not. The SSO endpoints
read the query string themselves (the Redirect binding's signature is over its exact bytes), and
an AuthnRequest with its signature is a few kilobytes there: parsing it once more for nothing
was 2% of a card login's server CPU. ``/cert-login``, the card's one request, reads its one
parameter itself too. Otherwise this is FastAPI's route: in the OpenAPI
document, 405 for a method it does not take (HEAD included), exceptions handled as anywhere.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response


class PlainRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        parameters = list(inspect.signature(endpoint).parameters.values())
        if len(parameters) != 1 or not inspect.iscoroutinefunction(endpoint):
            raise TypeError(
                f"{path}: a PlainRoute's endpoint is a coroutine function of the request alone"
            )
        super().__init__(path, endpoint, **options)

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        return self.endpoint

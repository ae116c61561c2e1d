"""The SSO endpoints and /cert-login as PlainRoutes (idp.web.plain_route): called without
FastAPI solving parameters, and otherwise still FastAPI's routes."""

from __future__ import annotations

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from idp.web.plain_route import PlainRoute
from tests.conftest import IdpUnderTest
from tests.helpers.support import tls_context


async def _of_the_request(request: Request) -> Response:
    return Response()


async def _with_a_parameter(request: Request, ref: str = "") -> Response:
    return Response()


def _not_a_coroutine(request: Request) -> Response:
    return Response()


def test_an_endpoint_that_is_not_a_coroutine_of_the_request_alone_is_refused() -> None:
    PlainRoute("/fine", _of_the_request, methods=["GET"])
    for endpoint in (_with_a_parameter, _not_a_coroutine):
        with pytest.raises(TypeError, match="/x: a PlainRoute's endpoint is a coroutine"):
            PlainRoute("/x", endpoint, methods=["GET"])


def test_the_sso_endpoints_are_still_described_and_take_only_their_methods(
    idp: IdpUnderTest,
) -> None:
    with httpx.Client(verify=tls_context(idp.ca_file), timeout=30) as client:
        paths = client.get(f"{idp.base_url}/openapi.json").json()["paths"]
        assert set(paths["/saml/sso/redirect"]) == {"get"}
        assert set(paths["/saml/sso/post"]) == {"post"}
        assert set(paths["/cert-login"]) == {"get"}
        login_url, _ = idp.sp.login_url()
        # A HEAD (a link checker's, say) must not spend the SP's request: 405, as before.
        for method in ("HEAD", "POST", "PUT", "DELETE"):
            assert client.request(method, login_url).status_code == 405, method
        assert client.request("GET", f"{idp.base_url}/saml/sso/post").status_code == 405
        # And the request was not spent: it still opens the chooser.
        chooser = client.get(login_url)
        assert chooser.status_code == 200 and "method-this-device" in chooser.text

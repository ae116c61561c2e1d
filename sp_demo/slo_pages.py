"""Logging out of mock Treserva, and Single Logout with the IdP in both directions.

``GET /logout`` ends the local session at once (the user is out of Treserva whatever happens
next); a SITHS login then goes on to the IdP with a LogoutRequest, and the IdP's LogoutResponse
comes back to ``/saml/slo/redirect`` or ``/saml/slo/post``. The IdP's own LogoutRequests (the
user logged out at the IdP or in another application) arrive at the same two endpoints: the
local session ends and the browser is sent back to the IdP with the LogoutResponse.
"""

from __future__ import annotations

import logging
import urllib.parse

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sp_demo.bindings import (
    MAX_PARAMETERS,
    SAML_REQUEST,
    SAML_RESPONSE,
    BindingError,
    ReceivedMessage,
    read_post_form,
    read_redirect_query,
)
from sp_demo.client_provider import SamlClientProvider
from sp_demo.idp_metadata import IdpMetadataError
from sp_demo.oidc_login import OIDC_NAME_ID_FORMAT
from sp_demo.pages import error_page, render, settings_of, siths_login, windows_account
from sp_demo.slo import (
    LOGOUT_REQUEST_KEY,
    LogoutMessageError,
    answer_logout_request,
    finish_logout,
    start_logout,
)

logger = logging.getLogger("sp_demo")
router = APIRouter()


def _clients(request: Request) -> SamlClientProvider:
    return request.app.state.saml_clients


@router.get("/logout")
async def logout(request: Request) -> Response:
    login = siths_login(request)
    was_logged_in = login is not None or windows_account(request) is not None
    id_token = request.session.get("oidc_id_token", "")
    request.session.clear()
    if login is None:
        return _logged_out(request, was_logged_in, idp_logout=None)
    if login.name_id_format == OIDC_NAME_ID_FORMAT:
        # An OpenID Connect login ends at the IdP's end-session endpoint (RP-initiated logout).
        settings = request.app.state.settings
        query = urllib.parse.urlencode(
            {"id_token_hint": id_token, "post_logout_redirect_uri": f"{settings.base_url}/"}
        )
        return RedirectResponse(f"{settings.oidc_issuer}/oidc/end-session?{query}", 303)
    try:
        client = await run_in_threadpool(_clients(request).get)
        location = await run_in_threadpool(start_logout, client, login, request.session)
    except IdpMetadataError as error:
        logger.warning("cannot send a LogoutRequest: %s", error)
        location = None
    if location is None:
        return _logged_out(request, True, idp_logout="unavailable")
    logger.info("logout: %s, LogoutRequest to the IdP", login.hsa_id)
    return RedirectResponse(location, status_code=303)


@router.get("/saml/slo/redirect")
async def single_logout_redirect(request: Request) -> Response:
    try:
        received = read_redirect_query(request.scope.get("query_string", b""), _MESSAGES)
    except BindingError as error:
        logger.warning("logout message refused (%s): %.300s", error.reason, error.detail)
        return error_page(request, "logout_invalid")
    return await _receive(request, BINDING_HTTP_REDIRECT, received)


@router.post("/saml/slo/post")
async def single_logout_post(request: Request) -> Response:
    try:
        form = await request.form(max_files=0, max_fields=MAX_PARAMETERS)
        received = read_post_form(form, _MESSAGES)
    except BindingError as error:
        logger.warning("logout message refused (%s): %.300s", error.reason, error.detail)
        return error_page(request, "logout_invalid")
    return await _receive(request, BINDING_HTTP_POST, received)


_MESSAGES = (SAML_REQUEST, SAML_RESPONSE)


async def _receive(request: Request, binding: str, received: ReceivedMessage) -> Response:
    try:
        client = await run_in_threadpool(_clients(request).get)
    except IdpMetadataError as error:
        logger.warning("cannot check a logout message: %s", error)
        return error_page(request, "idp_unavailable")
    settings = settings_of(request)
    if not received.is_request:
        try:
            succeeded = await run_in_threadpool(
                finish_logout, client, settings, binding, received, request.session
            )
        except LogoutMessageError as error:
            logger.warning("LogoutResponse refused (%s): %.300s", error.reason, error.detail)
            return error_page(request, "logout_invalid")
        return _logged_out(request, True, idp_logout="done" if succeeded else "failed")

    login = siths_login(request)
    try:
        answer = await run_in_threadpool(
            answer_logout_request, client, settings, binding, received, login
        )
    except LogoutMessageError as error:
        # No answer to a message that may not be the IdP's; the session is left as it is.
        logger.warning("LogoutRequest refused (%s): %.300s", error.reason, error.detail)
        return error_page(request, "logout_invalid")
    if answer.ends_local_session and login is not None:
        logger.info("logout requested by the IdP: %s", login.hsa_id)
        request.session.clear()
    return RedirectResponse(answer.location, status_code=303)


def _logged_out(request: Request, was_logged_in: bool, idp_logout: str | None) -> Response:
    request.session.pop(LOGOUT_REQUEST_KEY, None)
    return render(
        request, "logged_out.html", {"was_logged_in": was_logged_in, "idp_logout": idp_logout}
    )

"""Mock Treserva's own login pages: ``GET /`` start page, ``GET /login`` (SITHS login: redirect
to the IdP), ``POST /saml/acs``, ``GET /me`` and ``GET /saml/metadata``.

They find the settings, the database, the SAML client and the OIDC client on ``app.state``
(:func:`sp_demo.app.create_app` puts them there). Who may do what comes from Treserva's own
database, looked up on every ``/me``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sp_demo.bindings import MAX_PARAMETERS, SAML_RESPONSE, BindingError, read_post_form
from sp_demo.client_provider import SamlClientProvider
from sp_demo.cutover import windows_login_open
from sp_demo.db import (
    LOGIN_SITHS,
    LOGIN_WINDOWS,
    Database,
    User,
    find_user_by_hsa_id,
    find_user_by_windows_account,
)
from sp_demo.idp_metadata import IdpMetadataError
from sp_demo.pages import (
    AFTER_LOGIN_KEY,
    AFTER_LOGIN_PATHS,
    LOGIN_KEY,
    WINDOWS_KEY,
    database_of,
    error_page,
    render,
    settings_of,
    siths_login,
    windows_account,
)
from sp_demo.saml import (
    LoginResponseError,
    build_sp_metadata_xml,
    parse_login_response,
    start_login,
)
from sp_demo.users import is_admin, permissions_on

logger = logging.getLogger("sp_demo")
router = APIRouter()
# A SAML Response is a few kilobytes; this leaves room for a long certificate chain.
MAX_SAML_RESPONSE_CHARS = 256 * 1024


def _saml_clients(request: Request) -> SamlClientProvider:
    return request.app.state.saml_clients


@router.get("/")
async def start_page(request: Request) -> Response:
    settings = settings_of(request)
    return render(
        request,
        "start.html",
        {
            "windows_login_open": windows_login_open(settings),
            "cutover_date": settings.cutover_date,
            "oidc_login": request.app.state.oauth is not None,
        },
    )


@router.get("/login")
async def login(request: Request, next: str = "/me") -> Response:
    # Only a fixed set of local pages: never an open redirect.
    if next in AFTER_LOGIN_PATHS and next != "/me":
        request.session[AFTER_LOGIN_KEY] = next
    else:
        request.session.pop(AFTER_LOGIN_KEY, None)
    try:
        client = await run_in_threadpool(_saml_clients(request).get)
    except IdpMetadataError as error:
        logger.warning("cannot start a login: %s", error)
        return error_page(request, "idp_unavailable")
    # start_login writes the request ID into the session; the session is a plain dict here
    # and is serialised into the cookie when the response goes out.
    location = await run_in_threadpool(start_login, client, request.session)
    return RedirectResponse(location, status_code=303)


@router.post("/saml/acs")
async def assertion_consumer_service(request: Request) -> Response:
    try:
        form = await request.form(max_files=0, max_fields=MAX_PARAMETERS)
        saml_response = read_post_form(form, (SAML_RESPONSE,)).text
    except BindingError:
        return error_page(request, "missing_response")
    if len(saml_response) > MAX_SAML_RESPONSE_CHARS:
        return error_page(request, "invalid")
    try:
        client = await run_in_threadpool(_saml_clients(request).get)
    except IdpMetadataError as error:
        logger.warning("cannot check a SAML Response: %s", error)
        return error_page(request, "idp_unavailable")
    try:
        result = await run_in_threadpool(
            parse_login_response, client, saml_response, request.session
        )
    except LoginResponseError as error:
        # The detail may quote the message; keep the log line short.
        logger.warning("SAML Response refused (%s): %.300s", error.reason, error.detail)
        return error_page(request, error.reason)
    # One login per session: a SITHS login replaces a Windows one.
    request.session.pop(WINDOWS_KEY, None)
    request.session[LOGIN_KEY] = result.to_dict()
    logger.info("login: %s via %s", result.hsa_id, result.idp_entity_id)
    after = request.session.pop(AFTER_LOGIN_KEY, "/me")
    return RedirectResponse(after if after in AFTER_LOGIN_PATHS else "/me", status_code=303)


@router.get("/me")
async def me(request: Request) -> Response:
    settings, database = settings_of(request), database_of(request)
    login_result = siths_login(request)
    if login_result is not None:
        account = await run_in_threadpool(_account_view, database, LOGIN_SITHS, login_result.hsa_id)
        if account is None:
            return render(request, "unknown_user.html", {"login": login_result}, 403)
        return render(
            request, "me.html", {"login": login_result, "account": account, "method": "siths"}
        )
    account_name = windows_account(request)
    if account_name is None:
        return RedirectResponse("/", status_code=303)
    if not windows_login_open(settings):
        # A Windows session that began before the cut-over ends with it.
        request.session.clear()
        return RedirectResponse("/windows-login", status_code=303)
    account = await run_in_threadpool(_account_view, database, LOGIN_WINDOWS, account_name)
    if account is None:
        request.session.clear()
        return RedirectResponse("/windows-login", status_code=303)
    return render(
        request,
        "me.html",
        {
            "login": None,
            "account": account,
            "method": "windows",
            "cutover_date": settings.cutover_date,
        },
    )


@router.get("/saml/metadata")
async def metadata(request: Request) -> Response:
    # Built once, on the first request.
    built: list[str] = request.app.state.sp_metadata
    if not built:
        built.append(await run_in_threadpool(build_sp_metadata_xml, settings_of(request)))
    return Response(built[0], media_type="application/samlmetadata+xml")


def _account_view(database: Database, login: str, key: str) -> dict[str, Any] | None:
    """The account as plain data for ``me.html``, or None if Treserva has none.

    A deactivated account counts as none. ``login`` says how the user logged in and ``key``
    is the HSA-ID (SITHS) or the Windows account: only that login's permissions are shown,
    and how many sit on the other one.
    """
    with database.session() as session:
        user: User | None
        if login == LOGIN_SITHS:
            user = find_user_by_hsa_id(session, key)
        else:
            user = find_user_by_windows_account(session, key)
        if user is None or not user.active:
            return None
        other = LOGIN_WINDOWS if login == LOGIN_SITHS else LOGIN_SITHS
        return {
            "display_name": user.display_name,
            "windows_account": user.windows_account,
            "hsa_id": user.hsa_id,
            "permissions": [(p.role, p.unit) for p in permissions_on(user, login)],
            "permissions_on_other_login": len(permissions_on(user, other)),
            "is_admin": is_admin(user),
        }

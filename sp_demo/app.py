"""``create_app(settings)``: mock Treserva's pages and SAML endpoints.

Routes here: ``GET /`` start page, ``GET /login`` (SITHS login: redirect to the IdP),
``POST /saml/acs``, ``GET /me``, ``GET /saml/metadata``. The Windows login stand-in is in
:mod:`sp_demo.windows_login`, the administrator pages in :mod:`sp_demo.admin_pages`, logout and
Single Logout in :mod:`sp_demo.slo_pages`. The login lives in a signed session cookie
(starlette ``SessionMiddleware``); who may do what comes from Treserva's own database, looked
up on every ``/me``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from idp.saml.bindings import MAX_PARAMETERS, SAML_RESPONSE, BindingMessageRejected, read_post_form
from sp_demo import admin_pages, oidc_login, slo_pages, windows_login
from sp_demo.client_provider import SamlClientProvider
from sp_demo.config import Settings
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
from sp_demo.messages import FALLBACK
from sp_demo.oidc_login import build_oauth
from sp_demo.pages import (
    AFTER_LOGIN_KEY,
    AFTER_LOGIN_PATHS,
    LOGIN_KEY,
    WINDOWS_KEY,
    error_page,
    render,
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
STATIC_DIR = Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "treserva_session"
SESSION_MAX_AGE_SECONDS = 8 * 3600
# A SAML Response is a few kilobytes; this leaves room for a long certificate chain.
MAX_SAML_RESPONSE_CHARS = 256 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app. Needs the SP key and certificate; the IdP is contacted on first login."""
    settings = settings or Settings()
    database = Database(settings.database_url)
    saml_clients = SamlClientProvider(settings)
    sp_metadata: list[str] = []  # built once, on first request

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        database.dispose()

    app = FastAPI(
        title=settings.display_name,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.saml_clients = saml_clients
    app.state.oauth = build_oauth(settings)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret_value(),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE_SECONDS,
        # The IdP posts the Response to the ACS from its own site. Browsers send a Lax cookie
        # on a cross-site top-level GET but not on a cross-site POST, and without the cookie
        # the InResponseTo check has nothing to check against. So: None, which requires Secure.
        same_site="none" if settings.uses_https else "lax",
        https_only=settings.uses_https,
    )
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/static/"):
            # The stylesheet may be cached; pages (with names and HSA-IDs) may not.
            response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 404:
            return error_page(request, "not_found")
        return Response(status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> Response:
        logger.exception("unexpected error on %s", request.url.path)
        return error_page(request, "unexpected", FALLBACK)

    app.include_router(windows_login.router)
    app.include_router(admin_pages.router)
    app.include_router(slo_pages.router)
    app.include_router(oidc_login.router)

    @app.get("/")
    async def start_page(request: Request) -> Response:
        return render(
            request,
            "start.html",
            {
                "windows_login_open": windows_login_open(settings),
                "cutover_date": settings.cutover_date,
                "oidc_login": app.state.oauth is not None,
            },
        )

    @app.get("/login")
    async def login(request: Request, next: str = "/me") -> Response:
        # Only a fixed set of local pages: never an open redirect.
        if next in AFTER_LOGIN_PATHS and next != "/me":
            request.session[AFTER_LOGIN_KEY] = next
        else:
            request.session.pop(AFTER_LOGIN_KEY, None)
        try:
            client = await run_in_threadpool(saml_clients.get)
        except IdpMetadataError as error:
            logger.warning("cannot start a login: %s", error)
            return error_page(request, "idp_unavailable")
        # start_login writes the request ID into the session; the session is a plain dict here
        # and is serialised into the cookie when the response goes out.
        location = await run_in_threadpool(start_login, client, request.session)
        return RedirectResponse(location, status_code=303)

    @app.post("/saml/acs")
    async def assertion_consumer_service(request: Request) -> Response:
        try:
            form = await request.form(max_files=0, max_fields=MAX_PARAMETERS)
            saml_response = read_post_form(form, (SAML_RESPONSE,)).text
        except BindingMessageRejected:
            return error_page(request, "missing_response")
        if len(saml_response) > MAX_SAML_RESPONSE_CHARS:
            return error_page(request, "invalid")
        try:
            client = await run_in_threadpool(saml_clients.get)
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

    @app.get("/me")
    async def me(request: Request) -> Response:
        login_result = siths_login(request)
        if login_result is not None:
            account = await run_in_threadpool(
                _account_view, database, LOGIN_SITHS, login_result.hsa_id
            )
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

    @app.get("/saml/metadata")
    async def metadata() -> Response:
        if not sp_metadata:
            sp_metadata.append(await run_in_threadpool(build_sp_metadata_xml, settings))
        return Response(sp_metadata[0], media_type="application/samlmetadata+xml")

    return app


def _account_view(database: Database, login: str, key: str) -> dict[str, Any] | None:
    """The account as plain data for ``me.html``, or None if Treserva has none.

    ``login`` says how the user logged in and ``key`` is the HSA-ID (SITHS) or the Windows
    account: only that login's permissions are shown, and how many sit on the other one.
    """
    with database.session() as session:
        user: User | None
        if login == LOGIN_SITHS:
            user = find_user_by_hsa_id(session, key)
        else:
            user = find_user_by_windows_account(session, key)
        if user is None:
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

"""``create_app(settings)``: mock Treserva's pages and SAML endpoints.

Routes: ``GET /`` start page, ``GET /login`` (redirect to the IdP), ``POST /saml/acs``,
``GET /me``, ``GET /saml/metadata``, ``GET /logout`` (local session only; SLO comes later).
The login lives in a signed session cookie (starlette ``SessionMiddleware``); who may do what
comes from Treserva's own database, looked up by the HSA-ID on every ``/me``.
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
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sp_demo.client_provider import SamlClientProvider
from sp_demo.config import REPO_ROOT, Settings
from sp_demo.db import Database, find_user_by_hsa_id
from sp_demo.idp_metadata import IdpMetadataError
from sp_demo.messages import FALLBACK, UserMessage, message_for
from sp_demo.saml import (
    LoginResponseError,
    LoginResult,
    build_sp_metadata_xml,
    parse_login_response,
    start_login,
)

logger = logging.getLogger("sp_demo")
TEMPLATES_DIR = REPO_ROOT / "templates" / "sp_demo"
STATIC_DIR = Path(__file__).resolve().parent / "static"
LOGIN_KEY = "login"
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
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
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

    def render(
        request: Request, template: str, context: dict[str, Any], status_code: int = 200
    ) -> Response:
        base = {"display_name": settings.display_name, "logged_in": LOGIN_KEY in request.session}
        return templates.TemplateResponse(
            request, template, {**base, **context}, status_code=status_code
        )

    def error_page(request: Request, reason: str, message: UserMessage | None = None) -> Response:
        message = message or message_for(reason)
        return render(
            request, "error.html", {"message": message, "reason": reason}, message.status_code
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 404:
            return error_page(request, "not_found")
        return Response(status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> Response:
        logger.exception("unexpected error on %s", request.url.path)
        return error_page(request, "unexpected", FALLBACK)

    @app.get("/")
    async def start_page(request: Request) -> Response:
        return render(request, "start.html", {})

    @app.get("/login")
    async def login(request: Request) -> Response:
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
        form = await request.form()
        saml_response = form.get("SAMLResponse")
        if not isinstance(saml_response, str) or not saml_response.strip():
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
        request.session[LOGIN_KEY] = result.to_dict()
        logger.info("login: %s via %s", result.hsa_id, result.idp_entity_id)
        return RedirectResponse("/me", status_code=303)

    @app.get("/me")
    async def me(request: Request) -> Response:
        stored = request.session.get(LOGIN_KEY)
        if not isinstance(stored, dict):
            return RedirectResponse("/", status_code=303)
        login_result = LoginResult.from_dict(stored)
        account = await run_in_threadpool(_account_view, database, login_result.hsa_id)
        if account is None:
            return render(request, "unknown_user.html", {"login": login_result}, 403)
        return render(request, "me.html", {"login": login_result, "account": account})

    @app.get("/saml/metadata")
    async def metadata() -> Response:
        if not sp_metadata:
            sp_metadata.append(await run_in_threadpool(build_sp_metadata_xml, settings))
        return Response(sp_metadata[0], media_type="application/samlmetadata+xml")

    @app.get("/logout")
    async def logout(request: Request) -> Response:
        was_logged_in = LOGIN_KEY in request.session
        request.session.clear()
        return render(request, "logged_out.html", {"was_logged_in": was_logged_in})

    return app


def _account_view(database: Database, hsa_id: str) -> dict[str, Any] | None:
    """The account for ``hsa_id`` as plain data for a template, or None if Treserva has none."""
    with database.session() as session:
        user = find_user_by_hsa_id(session, hsa_id)
        if user is None:
            return None
        return {
            "display_name": user.display_name,
            "windows_account": user.windows_account,
            "hsa_id": user.hsa_id,
            "permissions": [(p.role, p.unit) for p in user.permissions],
        }

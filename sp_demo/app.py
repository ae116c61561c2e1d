"""``create_app(settings)``: mock Treserva's pages and SAML endpoints.

The start page, the SITHS login and ``/me`` are in :mod:`sp_demo.login_pages`, the Windows
login stand-in in :mod:`sp_demo.windows_login`, the administrator pages in
:mod:`sp_demo.admin_pages`, logout and Single Logout in :mod:`sp_demo.slo_pages`. The login
lives in a signed session cookie (starlette ``SessionMiddleware``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response

from sp_demo import admin_pages, login_pages, oidc_login, scim, slo_pages, windows_login
from sp_demo.client_provider import SamlClientProvider
from sp_demo.config import Settings
from sp_demo.db import (
    Database,
)
from sp_demo.messages import FALLBACK
from sp_demo.oidc_login import build_oauth
from sp_demo.pages import (
    error_page,
)

logger = logging.getLogger("sp_demo")
STATIC_DIR = Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "treserva_session"
SESSION_MAX_AGE_SECONDS = 8 * 3600
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
    app.state.saml_clients = SamlClientProvider(settings)
    app.state.oauth = build_oauth(settings)
    app.state.sp_metadata = []  # built once, on the first request for it
    _add_middleware(app, settings)
    _add_error_pages(app)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    for router in (
        windows_login.router,
        admin_pages.router,
        slo_pages.router,
        oidc_login.router,
        scim.router,
        scim.integration_router,
        login_pages.router,
    ):
        app.include_router(router)
    return app


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """The login's session cookie and the security headers of every answer."""
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

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/static/"):
            # The stylesheet may be cached; pages (with names and HSA-IDs) may not.
            response.headers["Cache-Control"] = "public, max-age=3600"
        return response


def _add_error_pages(app: FastAPI) -> None:
    """Treserva's own page for a 404 and for anything unexpected (never a stack trace)."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 404:
            return error_page(request, "not_found")
        return Response(status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> Response:
        logger.exception("unexpected error on %s", request.url.path)
        return error_page(request, "unexpected", FALLBACK)

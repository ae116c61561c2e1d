"""``create_app(settings)``: the portal's pages, its step-6 API and its outbox sender.

Routes: ``/`` start, ``/login`` ``/oidc/callback`` ``/logout`` (:mod:`portal.oidc_login`),
``/bestallningar`` and ``/eku`` (steps 1-5, :mod:`portal.pages`), ``/hamta/<link>`` (step 6,
:mod:`portal.enrolment_pages`), ``/beredskap`` (the readiness board). While the app runs, a
background task hands the outbox's mails to the SMTP server every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response

from idp.siths.revocation import RevocationChecker, RevocationPolicy
from idp.siths.trust import load_siths_trust
from idp.siths.validation import SithsValidator
from portal import enrolment_pages, idp_directory, mail, oidc_login, pages
from portal.config import Settings
from portal.db import Database
from portal.import_jobs import ImportJobs
from portal.refusals import Refused
from portal.web import fallback_page, refusal_page
from siths_testkit.pki import TestPki, load_test_pki
from sp_demo.app import STATIC_DIR as TRESERVA_STATIC_DIR

logger = logging.getLogger("portal")
STATIC_DIR = Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "portal_session"
SESSION_MAX_AGE_SECONDS = 8 * 3600
OUTBOX_INTERVAL_SECONDS = 2.0
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


async def _send_outbox_forever(settings: Settings, database: Database) -> None:
    """Mails and the IdP directory's catch-up, every few seconds while the app runs."""
    while True:
        try:
            await run_in_threadpool(mail.send_due, settings, database.session)
            await run_in_threadpool(idp_directory.sync_pending, settings, database.session)
        except Exception:
            logger.exception("the outbox sender failed; trying again")
        await asyncio.sleep(OUTBOX_INTERVAL_SECONDS)


class CardChecks:
    """What step 6 needs, made on first use (the demo's PKI may appear after start-up): the
    test PKI (the CA the portal models) and one SITHS validator per provider organisation,
    each the IdP's own :class:`SithsValidator` with the same trust files and a revocation
    check that fails closed."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._pki: TestPki | None = None
        self._validators: dict[str, SithsValidator] = {}
        self._revocation = RevocationChecker(RevocationPolicy())

    def pki(self) -> TestPki:
        with self._lock:
            if self._pki is None:
                self._pki = load_test_pki(self._settings.pki_dir)
            return self._pki

    def validator_for(self, organisation: str) -> SithsValidator:
        with self._lock:
            if organisation not in self._validators:
                trust = load_siths_trust(
                    self._settings.trust_anchors_file, self._settings.intermediates_file
                )
                self._validators[organisation] = SithsValidator(
                    trust, [organisation], self._revocation
                )
            return self._validators[organisation]


def create_app(settings: Settings | None = None, *, send_mail: bool = True) -> FastAPI:
    """The ASGI app. ``send_mail`` False leaves the outbox to ``portal outbox send``."""
    settings = settings or Settings()
    database = Database(settings.database_url)
    app = FastAPI(
        title=settings.display_name,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_lifespan(settings, database, send_mail),
    )
    app.state.settings = settings
    app.state.database = database
    app.state.oauth = oidc_login.build_oauth(settings)
    app.state.import_jobs = ImportJobs()
    checks = CardChecks(settings)
    app.state.pki = checks.pki
    app.state.validator_for = checks.validator_for
    _add_middleware(app, settings)
    # The portal looks like mock Treserva: its stylesheet, served as it is, under the portal's.
    app.mount(
        "/static/treserva",
        StaticFiles(directory=str(TRESERVA_STATIC_DIR)),
        name="treserva-static",
    )
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    _add_error_pages(app)
    app.include_router(oidc_login.router)
    app.include_router(pages.router)
    app.include_router(enrolment_pages.router)
    return app


def _lifespan(
    settings: Settings, database: Database, send_mail: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """While the app runs: the outbox sender (when ``send_mail``); afterwards the database's
    connections are closed."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sender = (
            asyncio.create_task(_send_outbox_forever(settings, database)) if send_mail else None
        )
        yield
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        database.dispose()

    return lifespan


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """The login's session cookie and the security headers of every answer."""
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret_value(),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE_SECONDS,
        # The OIDC callback is a top-level GET: Lax carries the cookie there; no POST comes
        # from another site.
        same_site="lax",
        https_only=settings.uses_https,
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "public, max-age=3600"
        return response


def _add_error_pages(app: FastAPI) -> None:
    """The portal's refusal page for a 404, its fallback page for anything unexpected."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 404:
            return refusal_page(request, Refused("not_found"))
        return Response(status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, _error: Exception) -> Response:
        logger.exception("unexpected error on %s", request.url.path)
        return fallback_page(request)

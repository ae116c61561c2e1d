"""``create_app(settings)``: wires storage, SITHS validation, SAML and the pages together."""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from idp.audit import database_audit_hook, record_audit_event
from idp.blocking import BlockingCalls
from idp.client_certificate import TrustedProxies
from idp.config import Settings
from idp.db import Database, prepare_schema
from idp.federation.endpoints import metadata_router
from idp.federation.remote import RemoteAggregate
from idp.login.authenticate import CertificateAuthentication
from idp.login.policy import LoginPolicy
from idp.login.steps import LoginSteps
from idp.methods.other_device import app_api
from idp.methods.other_device.app_steps import AppOrderSteps
from idp.methods.other_device.browser import OtherDeviceBrowser
from idp.methods.this_device import ThisDeviceLogin
from idp.oidc import endpoints as oidc_endpoints
from idp.oidc.provider import OpenIDProvider, build_provider
from idp.ops.install import install_operations
from idp.ops.metrics import CountingRevocationCache, IdpMetrics
from idp.saml import endpoints as saml_endpoints
from idp.saml.logout import SamlLogout
from idp.saml.server import SamlIdentityProvider
from idp.saml.slo import SamlSingleLogout
from idp.saml.slo_endpoints import SamlLogoutEndpoints
from idp.saml.sso import SamlSingleSignOn
from idp.services import Services
from idp.siths.revocation import RevocationCache, RevocationChecker, RevocationPolicy
from idp.siths.trust import load_siths_trust
from idp.siths.validation import SithsValidator
from idp.store.revocation_cache import DatabaseRevocationCache
from idp.web.failsafe import FailSafe
from idp.web.json_response import JsonResponse
from idp.web.login_pages import LoginPages
from idp.web.messages import FALLBACK, UserMessage
from idp.web.middleware import LimitsAndHeaders
from idp.web.packaged_files import PackagedFiles
from idp.web.render import error_page, render_page
from idp.web.routes import add_routes

logger = logging.getLogger("idp")
STATIC_DIR = Path(__file__).resolve().parent / "web" / "static"
MAX_BODY_BYTES = 256 * 1024
NOT_FOUND = UserMessage(
    "Sidan finns inte",
    "Adressen leder ingenstans. Gå tillbaka till systemet du vill använda och logga in därifrån.",
    "Page not found",
    "This address leads nowhere. Go back to the system you want to use and log in from there.",
    status_code=404,
)


def _pairwise_secret(settings: Settings) -> bytes:
    if settings.pairwise_secret:
        return settings.pairwise_secret.encode("utf-8")
    path = settings.var_dir / "pairwise-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode("utf-8")


def _revocation_checker(
    settings: Settings, database: Database, metrics: IdpMetrics | None = None
) -> RevocationChecker:
    if settings.revocation_soft_fail:
        logger.warning(
            "revocation SOFT-FAIL is ON: a card is let in when no OCSP responder or CRL can "
            "be reached; every such login is logged and audited as revocation_soft_fail"
        )
    policy = RevocationPolicy(
        soft_fail=settings.revocation_soft_fail,
        clock_skew=dt.timedelta(seconds=settings.revocation_clock_skew_seconds),
        timeout_seconds=settings.revocation_timeout_seconds,
        ocsp_url=settings.revocation_ocsp_url,
        unreachable_retry=dt.timedelta(seconds=settings.revocation_unreachable_retry_seconds),
    )
    # The cache is the IdP's database, so every node reuses what any node learned.
    cache: RevocationCache = DatabaseRevocationCache(database)
    if metrics is not None:
        cache = CountingRevocationCache(cache, metrics)
    return RevocationChecker(policy, cache)


@dataclass(frozen=True)
class Components:
    """What ``create_app`` wires into the app: the services every page and login method shares,
    and the two protocol sides (the SAML IdP and its use cases, the OIDC provider). Every
    router is built from these at start-up (:func:`_include_routers`)."""

    services: Services
    saml: SamlIdentityProvider
    saml_sso: SamlSingleSignOn
    saml_slo: SamlSingleLogout
    oidc: OpenIDProvider


def _remote_sp_metadata(settings: Settings, database: Database) -> RemoteAggregate | None:
    """The remote signed SP metadata aggregate, if configured: fetched once now (so the first
    SAML server has it), then refreshed in the background."""
    remote = RemoteAggregate.from_settings(settings, database_audit_hook(database))
    if remote is not None:
        remote.refresh()
        remote.start(refresh_now=False)
    return remote


def build_components(settings: Settings, metrics: IdpMetrics | None = None) -> Components:
    """Load keys, trust and metadata once; fail at start-up, not at the first login."""
    # Every node keeps files there (key rollover state, metadata caches), and /readyz checks
    # that it takes a write.
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    database = Database(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    prepare_schema(database.engine, migrate=settings.migrate_on_start)
    trust = load_siths_trust(settings.trust_anchors_file, settings.intermediates_file)
    pairwise_secret = _pairwise_secret(settings)
    policy = LoginPolicy.from_settings(settings)
    validator = SithsValidator(
        trust,
        policy.accepted_organisations,
        _revocation_checker(settings, database, metrics),
    )
    services = Services(
        settings=settings,
        database=database,
        trusted_proxies=TrustedProxies(settings.trusted_proxies),
        authenticator=CertificateAuthentication(validator, policy, record_audit_event),
        steps=LoginSteps(database, record_audit_event, settings.sso_session_ttl_seconds),
        blocking_calls=BlockingCalls(loop_first=database.in_process),
    )
    saml = SamlIdentityProvider(
        settings,
        pairwise_secret,
        database_audit_hook(database),
        remote=_remote_sp_metadata(settings, database),
    )
    oidc = build_provider(settings, database, pairwise_secret)
    services.responders["oidc"] = oidc_endpoints.OidcLoginResponder(oidc)
    saml_sso = SamlSingleSignOn(
        saml,
        database,
        record_audit_event,
        pending_ttl_seconds=settings.pending_login_ttl_seconds,
        sso_ttl_seconds=settings.sso_session_ttl_seconds,
    )
    services.responders["saml"] = saml_endpoints.SamlLoginResponder(saml_sso)
    services.failure_responders["saml"] = saml_endpoints.saml_failure_responder(saml_sso)
    services.failure_responders["oidc"] = oidc_endpoints.oidc_failure_responder(oidc)
    saml_slo = SamlSingleLogout(saml, SamlLogout(settings, saml), database, record_audit_event)
    return Components(services, saml, saml_sso, saml_slo, oidc)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="Göteborgs Stads Åtkomsttjänst",
        description="SITHS eID identity provider. The SITHS eID app API is under /app-api/v1.",
        docs_url=None,
        redoc_url=None,
        # The IdP's own metrics and access lines (idp.ops) are its telemetry; FastAPI's
        # OpenTelemetry hooks would only ask, on every request, whether anyone listens.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    metrics = IdpMetrics()
    components = build_components(settings, metrics)
    # Not for handlers (each router is given what it needs): the node runner's sweeper
    # (idp.server.run) takes its database from here.
    app.state.services = components.services
    _include_routers(app, components, settings)
    _add_error_handlers(app)
    # Every other exception is FailSafe's: inside the limits (its page gets the security
    # headers, and the body it may replay is bounded) and inside the operations middleware.
    app.add_middleware(FailSafe, database=components.services.database)
    app.add_middleware(LimitsAndHeaders, max_body_bytes=MAX_BODY_BYTES)
    # Last: its middleware must be the outermost (request id and timing around everything).
    install_operations(app, components.services, components.saml, components.oidc, metrics)
    return app


def _include_routers(app: FastAPI, components: Components, settings: Settings) -> None:
    """Every endpoint, each router wired to the objects it serves."""
    services = components.services
    add_routes(app, metadata_router(components.saml))
    add_routes(
        app,
        saml_endpoints.SamlEndpoints(
            components.saml_sso,
            settings.entity_id,
            settings.cert_login_url,
            services.blocking_calls,
        ).router(),
    )
    add_routes(app, SamlLogoutEndpoints(components.saml_slo).router())
    add_routes(
        app,
        oidc_endpoints.OidcEndpoints(
            components.oidc, pending_ttl_seconds=settings.pending_login_ttl_seconds
        ).router(),
    )
    add_routes(app, LoginPages(services).router())
    add_routes(app, ThisDeviceLogin(services).router())
    add_routes(app, OtherDeviceBrowser(services).router())
    add_routes(
        app,
        app_api.app_api_router(
            AppOrderSteps(services.database, services.authenticator, record_audit_event)
        ),
    )
    app.router.routes.append(PackagedFiles(STATIC_DIR).route())

    @app.get("/")
    async def home(request: Request) -> Response:
        return render_page(request, "idp/home.html", {"entity_id": settings.entity_id})


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = NOT_FOUND if exc.status_code == 404 else FALLBACK
        response = error_page(request, f"http_{exc.status_code}", message=message)
        response.status_code = exc.status_code
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_request: Request, exc: RequestValidationError) -> Response:
        # The app API's bodies are the only ones FastAPI validates. Its default answer echoes
        # the input and fails (a 500) on a body that is not UTF-8; this one names the fields
        # only, in the API's own error shape.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        return JsonResponse(
            {"errorCode": "invalidParameters", "details": problems}, status_code=422
        )

"""Wiring the operational parts into an app: one call from :func:`idp.app.create_app`."""

from __future__ import annotations

import functools

from fastapi import FastAPI

from idp.client_certificate import TrustedProxies
from idp.federation.idp_metadata import idp_metadata_xml
from idp.oidc.provider import OpenIDProvider
from idp.ops import health
from idp.ops.metrics import IdpMetrics
from idp.ops.middleware import OperationsMiddleware
from idp.saml.server import SamlIdentityProvider
from idp.services import Services
from idp.web.routes import add_routes


def install_operations(
    app: FastAPI,
    services: Services,
    saml: SamlIdentityProvider,
    oidc: OpenIDProvider,
    metrics: IdpMetrics,
) -> None:
    """Add ``/healthz``, ``/readyz`` and ``/metrics``, count audit events and database gauges
    in ``metrics``, and give every request an id and a latency measurement.

    Call it last in ``create_app``: the middleware it adds must be the outermost.
    """
    # The node runner (idp.server.run) counts the sweeper's deletions here.
    app.state.metrics = metrics
    probe = health.ReadinessProbe(services, oidc, functools.partial(idp_metadata_xml, saml))
    metrics.watch_audit_events(services.database)
    metrics.watch_database(services.database)
    allowed = TrustedProxies(services.settings.metrics_allowed_networks)
    add_routes(app, health.health_router(probe, metrics, allowed))
    app.add_middleware(
        OperationsMiddleware, metrics=metrics, trusted_proxies=services.trusted_proxies
    )

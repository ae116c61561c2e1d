"""Prometheus metrics of one IdP node, served at ``/metrics``.

Per node, not multi-process: a node is one process (``idp serve`` runs one uvicorn worker), and
Prometheus scrapes every node directly, never through the load balancer. Counters and
histograms count what *this* node did; the gauges read from the shared database
(``idp_orders_pending`` …) are the whole cluster's and the same on every node — sum the
counters over nodes, take any one node's gauge.

Callers rely on: :class:`IdpMetrics` owning its own registry (several apps in one process do
not collide); :meth:`IdpMetrics.watch_audit_events` counting audit events only once their
transaction has committed; :class:`CountingRevocationCache` being a drop-in
``RevocationCache``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from idp.db import Database
from idp.siths.revocation import RevocationCache
from idp.store.models import AuditEvent, Order, PendingLogin, SsoSession

logger = logging.getLogger("idp.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Logins are a few steps of tens of milliseconds; a card PIN prompt can hold one for seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_PENDING_AUDIT = "idp.metrics.pending_audit"


class IdpMetrics:
    """The node's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.logins = Counter(
            "idp_logins",
            "Logins answered to an application (audit event 'login'), by method and outcome.",
            ["method", "outcome"],
            registry=self.registry,
        )
        self.login_attempts = Counter(
            "idp_login_attempts",
            "Authentication attempts by a login method (audit events 'login.method' and "
            "'login.step'), by method, outcome and reason code.",
            ["method", "outcome", "reason"],
            registry=self.registry,
        )
        self.audit_events = Counter(
            "idp_audit_events",
            "Audit events committed, by event and outcome.",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "idp_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status class.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.revocation_cache = Counter(
            "idp_revocation_cache_lookups",
            "Revocation cache lookups (shared database cache), by result: hit or miss.",
            ["result"],
            registry=self.registry,
        )
        self.swept_rows = Counter(
            "idp_swept_rows",
            "Expired rows deleted by this node's sweeper, by table.",
            ["table"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # --- audit events --------------------------------------------------------------------

    def count_audit_event(self, event_name: str, outcome: str, method: str, reason: str) -> None:
        self.audit_events.labels(event_name, outcome).inc()
        if event_name == "login":
            self.logins.labels(method or "none", outcome).inc()
        elif event_name in ("login.method", "login.step"):
            self.login_attempts.labels(method or "none", outcome, reason or "none").inc()

    def watch_audit_events(self, database: Database) -> None:
        """Count the audit events written through ``database`` when their transaction commits
        (a rolled-back login is not counted)."""
        factory = database.session_factory

        @event.listens_for(factory, "after_flush")
        def _collect(session: Session, _context: Any) -> None:
            rows = [row for row in session.new if isinstance(row, AuditEvent)]
            if rows:
                session.info.setdefault(_PENDING_AUDIT, []).extend(
                    (row.event, row.outcome, row.method, row.reason) for row in rows
                )

        @event.listens_for(factory, "after_commit")
        def _count(session: Session) -> None:
            for entry in session.info.pop(_PENDING_AUDIT, ()):
                self.count_audit_event(*entry)

        @event.listens_for(factory, "after_rollback")
        def _forget(session: Session) -> None:
            session.info.pop(_PENDING_AUDIT, None)

    # --- gauges from the shared database -------------------------------------------------

    def watch_database(self, database: Database) -> None:
        self.registry.register(_DatabaseGauges(database))


class _DatabaseGauges(Collector):
    """Live counts read at scrape time from the shared database (cluster-wide values)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # values come from the database at scrape time only

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = dt.datetime.now(dt.UTC)
        try:
            with self._database.session() as session:
                orders = session.scalar(
                    select(func.count())
                    .select_from(Order)
                    .where(Order.status == "pending", Order.expires_at > now)
                )
                logins = session.scalar(
                    select(func.count())
                    .select_from(PendingLogin)
                    .where(PendingLogin.state != "completed", PendingLogin.expires_at > now)
                )
                sessions = session.scalar(
                    select(func.count()).select_from(SsoSession).where(SsoSession.expires_at > now)
                )
        except Exception as exc:  # a scrape must still answer while the database is away
            logger.warning("metrics: cannot read gauges from the database: %s", exc)
            return
        for name, help_text, value in (
            ("idp_orders_pending", "Cross-device orders waiting for the app (cluster)", orders),
            ("idp_pending_logins", "Logins started and not yet completed (cluster)", logins),
            ("idp_sso_sessions_active", "Unexpired SSO sessions (cluster)", sessions),
        ):
            yield GaugeMetricFamily(name, help_text, value=float(value or 0))


class CountingRevocationCache:
    """A ``RevocationCache`` that counts hits and misses of the cache it wraps."""

    def __init__(self, inner: RevocationCache, metrics: IdpMetrics) -> None:
        self._inner = inner
        self._hits = metrics.revocation_cache.labels("hit")
        self._misses = metrics.revocation_cache.labels("miss")

    def get(self, key: str, now: dt.datetime) -> str | None:
        status = self._inner.get(key, now)
        (self._misses if status is None else self._hits).inc()
        return status

    def put(self, key: str, status: str, until: dt.datetime) -> None:
        self._inner.put(key, status, until)

"""Prometheus metrics of one IdP node, served at ``/metrics``.

Per node: Prometheus scrapes every node directly, never through the load balancer. Counters
and histograms count what *this* node did; the gauges read from the shared database
(``idp_orders_pending`` …) are the whole cluster's and the same on every node — sum the
counters over nodes, take any one node's gauge.

A node is one process, or (``idp serve --workers N``) N worker processes under a supervisor
that share its ports. Then whichever worker answers a scrape reports the whole node: each
worker, after :func:`use_worker_metrics`, writes its counters and histograms to files in the
directory the supervisor made (prometheus_client's multiprocess mode) and renders the sum over
all the node's workers, dead ones included (a counter never goes down); the database gauges
are read once per scrape, by the answering worker.

Callers rely on: :class:`IdpMetrics` owning its own registry (several apps in one process do
not collide); only :func:`use_worker_metrics`, called in a worker process, switching to the
node-wide rendering (the supervisor never sets ``PROMETHEUS_MULTIPROC_DIR`` in its own
environment, so neither a single-process node nor a test process inherits it);
:meth:`IdpMetrics.watch_audit_events` counting audit events only once their transaction has
committed; :class:`CountingRevocationCache` being a drop-in ``RevocationCache``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Connection, event, func, select

from idp.audit import RECORDED_IN_TRANSACTION
from idp.db import Database
from idp.login.pending import PendingState
from idp.siths.revocation import RevocationCache
from idp.store.models import Order, PendingLogin, SsoSession

logger = logging.getLogger("idp.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Logins are a few steps of tens of milliseconds; a card PIN prompt can hold one for seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Where prometheus_client's multiprocess values put their files (it reads the variable).
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Set only in a worker process, by use_worker_metrics.
_worker_metrics_dir: Path | None = None


def use_worker_metrics(directory: Path) -> None:
    """Make this process one of a node's workers, before it creates any :class:`IdpMetrics`.

    Every ``IdpMetrics`` made afterwards in this process keeps its counters and histograms in
    files in ``directory`` (shared by the node's workers) and renders the node's sum. For a
    dedicated worker process only: it changes prometheus_client's process-wide value class.
    """
    global _worker_metrics_dir
    os.environ[MULTIPROCESS_DIR_ENV] = str(directory)
    # prometheus_client picks its value class from the variable when it is first imported,
    # which may have been before this call: pick it again, explicitly.
    values.ValueClass = values.MultiProcessValue()
    _worker_metrics_dir = directory


class IdpMetrics:
    """The node's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # What /metrics renders: the registry itself, or in a worker the files of all workers
        # (this worker's own values are among them; rendering both would count them twice).
        self._exposed = self.registry
        if _worker_metrics_dir is not None:
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, path=str(_worker_metrics_dir))
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
        """The Prometheus text of the node (of every worker, if there are several)."""
        return generate_latest(self._exposed)

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

        # Per transaction: what a transaction recorded is in its connection's info; a new
        # transaction starts with none.
        @event.listens_for(database.engine, "begin")
        def _start(connection: Connection) -> None:
            connection.info.pop(RECORDED_IN_TRANSACTION, None)

        @event.listens_for(database.engine, "commit")
        def _count(connection: Connection) -> None:
            for entry in connection.info.pop(RECORDED_IN_TRANSACTION, ()):
                self.count_audit_event(*entry)

        @event.listens_for(database.engine, "rollback")
        def _forget(connection: Connection) -> None:
            connection.info.pop(RECORDED_IN_TRANSACTION, None)

    # --- gauges from the shared database -------------------------------------------------

    def watch_database(self, database: Database) -> None:
        # Beside the multiprocess collector, not through files: read once per scrape.
        self._exposed.register(_DatabaseGauges(database))


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
                    .where(
                        PendingLogin.state != PendingState.COMPLETED, PendingLogin.expires_at > now
                    )
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

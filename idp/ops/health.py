"""``/healthz``, ``/readyz`` and ``/metrics``.

- ``/healthz``: the process serves requests (liveness; never touches the database). In a node
  with several worker processes it also says which one answered (``worker``: its index,
  ``pid``), from ``app.state.worker`` (set by :mod:`idp.server.worker`).
- ``/readyz``: the node can complete logins now: the database takes a write (an UPDATE in a
  transaction that is rolled back) and its schema is the newest migration; ``var/`` takes a
  small file (a full or read-only disk fails here); the SAML signing key and certificate are
  there and the certificate is valid; the OIDC signing keys are loaded; the IdP's own metadata
  can be built and signed with a ``validUntil`` in the future, and no SP metadata file is past
  its ``validUntil``. 200 with ``{"status": "ready", "checks": …}`` or 503 with the failing
  checks. Nothing is cached: every probe checks afresh (a few milliseconds); concurrent
  probes take turns, so probes cannot pile up on the database.
- ``/metrics``: Prometheus text format (:mod:`idp.ops.metrics`), only to clients in
  ``metrics_allowed_networks`` (others get 404, as if there were nothing there).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from defusedxml import ElementTree
from fastapi import APIRouter
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from idp.client_certificate import TrustedProxies
from idp.db import head_revision
from idp.oidc.provider import OpenIDProvider
from idp.ops.metrics import CONTENT_TYPE, IdpMetrics
from idp.saml.rollover import signing_keys
from idp.services import Services
from idp.web.json_response import JsonResponse

# Written to var/ and deleted by every probe: a disk that cannot take this cannot take a login's
# SQLite pages or the node's files either.
VAR_PROBE = b"\0" * 16384


def _parse_instant(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _valid_until(xml: bytes) -> dt.datetime | None:
    value = ElementTree.fromstring(xml).get("validUntil")
    return _parse_instant(value) if value else None


@dataclass
class ReadinessProbe:
    """Runs the readiness checks (blocking: call from a worker thread)."""

    services: Services
    oidc: OpenIDProvider
    # The IdP's own signed metadata as /saml/metadata serves it (idp.federation.idp_metadata).
    idp_metadata: Callable[[], str]
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # The migrations on disk do not change while the process runs: read them once.
    _head: str = field(default_factory=head_revision)

    def check(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            checks = {
                "database": self._run(self._database),
                "var": self._run(self._var),
                "keys": self._run(self._keys),
                "metadata": self._run(self._metadata),
            }
            return all(result["ok"] for result in checks.values()), checks

    @staticmethod
    def _run(check: Any) -> dict[str, Any]:
        try:
            detail = check()
        except Exception as exc:  # every failure is a "not ready", with its reason
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        return {"ok": True, **(detail or {})}

    def _database(self) -> dict[str, Any]:
        engine = self.services.database.engine
        with engine.connect() as connection, connection.begin() as transaction:
            current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            if current != self._head:
                raise RuntimeError(f"schema at {current}, newest is {self._head}")
            # A real write (a row lock; on SQLite the write lock) that changes nothing: a
            # read-only, locked or standby database fails here, as a login would.
            connection.execute(text("UPDATE alembic_version SET version_num = version_num"))
            transaction.rollback()
        return {"backend": engine.dialect.name, "schema": current}

    def _var(self) -> dict[str, Any]:
        directory: Path = self.services.settings.var_dir
        probe = directory / f".readyz-{os.getpid()}"
        try:
            with open(probe, "wb") as handle:
                handle.write(VAR_PROBE)
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            probe.unlink(missing_ok=True)
        return {"path": str(directory)}

    def _keys(self) -> dict[str, Any]:
        keys = signing_keys(self.services.settings)
        if not keys.key_file.is_file():
            raise RuntimeError("the SAML signing key file is missing")
        certificate = x509.load_pem_x509_certificate(keys.cert_file.read_bytes())
        if certificate.not_valid_after_utc <= dt.datetime.now(dt.UTC):
            raise RuntimeError("the SAML signing certificate has expired")
        algorithms = self.oidc.context.keys.algorithms
        if not algorithms:
            raise RuntimeError("no OIDC signing key is loaded")
        return {
            "saml_certificate_valid_until": certificate.not_valid_after_utc.isoformat(),
            "oidc_algorithms": list(algorithms),
        }

    def _metadata(self) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        own = _valid_until(self.idp_metadata().encode("utf-8"))
        if own is None or own <= now:
            raise RuntimeError("the IdP's metadata has no validUntil in the future")
        stale = []
        directory: Path = self.services.settings.sp_metadata_dir
        files = sorted(directory.glob("*.xml")) if directory.is_dir() else []
        for path in files:
            until = _valid_until(path.read_bytes())
            if until is not None and until <= now:
                stale.append(path.name)
        if stale:
            raise RuntimeError(f"SP metadata past validUntil: {', '.join(stale)}")
        return {"idp_valid_until": own.isoformat(), "sp_metadata_files": len(files)}


def health_router(
    probe: ReadinessProbe, registry: IdpMetrics, metrics_allowed: TrustedProxies
) -> APIRouter:
    """The three endpoints, wired at start-up to the probe, the metrics and who may read them."""
    router = APIRouter()

    @router.get("/healthz", include_in_schema=False)
    async def healthz(request: Request) -> Response:
        # Set after the app is built, by the worker that serves it: read per request.
        worker: dict[str, int] = getattr(request.app.state, "worker", None) or {}
        return JsonResponse({"status": "alive", **worker}, headers={"cache-control": "no-store"})

    @router.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        ready, checks = await run_in_threadpool(probe.check)
        return JsonResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
            headers={"cache-control": "no-store"},
        )

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if request.client is None or request.client.host not in metrics_allowed:
            return Response("Not Found", status_code=404, media_type="text/plain")
        # The database gauges query at collect time: off the event loop.
        body = await run_in_threadpool(registry.render)
        return Response(body, media_type=CONTENT_TYPE, headers={"cache-control": "no-store"})

    return router

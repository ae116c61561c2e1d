"""ASGI middleware: a request id for every request, its latency in the metrics, an access log.

The id is taken from the proxy's ``X-Request-ID`` only when the TCP peer is a trusted proxy
(the same rule as the certificate header), else made here; either way it is echoed in the
response's ``X-Request-ID`` and in every log line written while the request is served.
The access log line has the path but never the query string (it carries SAML messages and
login references).
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from idp.client_certificate import TrustedProxies
from idp.ops.metrics import IdpMetrics
from idp.ops.request_context import (
    REQUEST_ID_HEADER,
    acceptable_request_id,
    new_request_id,
    request_id_var,
)

access_logger = logging.getLogger("idp.access")
_HEADER = REQUEST_ID_HEADER.encode("latin-1")


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class OperationsMiddleware:
    """Wraps the whole app (outermost, so its timing includes the other middleware)."""

    def __init__(self, app: ASGIApp, metrics: IdpMetrics, trusted_proxies: TrustedProxies) -> None:
        self.app = app
        self.metrics = metrics
        self.trusted_proxies = trusted_proxies
        # The latency histogram's child per (route, method, status class): found once, not
        # looked up (under the metric's lock) at every request.
        self._latency: dict[tuple[str, str, str], Histogram] = {}

    def _request_id(self, scope: Scope) -> str:
        client = scope.get("client")
        if client and client[0] in self.trusted_proxies:
            for name, value in scope.get("headers", []):
                if name == _HEADER:
                    candidate = value.decode("latin-1")
                    if acceptable_request_id(candidate):
                        return candidate
        return new_request_id()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._request_id(scope)
        token = request_id_var.set(request_id)
        # For handlers, as ``request.state.request_id`` (SSO tells a proxy's retry by it).
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (_HEADER, request_id.encode("latin-1"))]
                message = {**message, "headers": headers}
            await send(message)

        failed = True
        try:
            await self.app(scope, receive, send_with_id)
            failed = False
        finally:
            elapsed = time.perf_counter() - started
            key = (_route_template(scope), scope.get("method", ""), f"{status // 100}xx")
            latency = self._latency.get(key)
            if latency is None:
                latency = self._latency[key] = self.metrics.request_latency.labels(*key)
            latency.observe(elapsed)
            access_logger.info(
                "%s %s %d %.1f ms",
                scope.get("method", ""),
                scope.get("path", ""),
                status,
                elapsed * 1000,
                extra={"status": status, "duration_ms": round(elapsed * 1000, 1)},
            )
            # After an exception (only a cancelled request gets here: idp.web.failsafe answers
            # every other one) the id stays set, so that whatever logs it next carries the id
            # too. The next request sets its own.
            if not failed:
                request_id_var.reset(token)

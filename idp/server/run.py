"""Run a node: embedded (HTTPS + the certificate listener) or behind a proxy (plain HTTP).

- **Embedded** (default): uvicorn serves HTTPS on ``port`` and
  :class:`~idp.server.cert_listener.CertificateListener` asks for the card on ``cert_port``.
- **Behind a proxy** (``behind_proxy``, ``idp serve --behind-proxy``): uvicorn serves plain
  HTTP on ``port`` for nginx, which terminates TLS and client-certificate TLS and forwards the
  card in ``client_cert_header``; the IdP believes that header only from ``trusted_proxies``.

Either way the node sweeps expired rows every ``sweep_interval_seconds``, and on SQLite each
of its processes checkpoints the database in a worker thread (:mod:`idp.ops.wal_checkpoints`).

:func:`idp.server.serve.serve` runs :func:`run_node` in this process, or (``workers`` > 1)
makes it the supervisor of N worker processes (:mod:`idp.server.supervisor`), each running
:func:`run_node` on ports it shares with the others (:mod:`idp.server.worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
import uvloop
from fastapi import FastAPI

from idp.config import Settings
from idp.ops.sweeper import run_sweeper
from idp.ops.wal_checkpoints import run_wal_checkpoints
from idp.server.cert_listener import CertificateListener, ListenerLimits
from idp.server.http_limits import RequestLimits, bounded_http_protocol

logger = logging.getLogger("idp.server")
# How long an idle connection stays open. Embedded: longer than a user's pause on the chooser
# (uvicorn's default, 5 s, is not), so the next page does not pay for a new TLS handshake.
# Behind nginx: longer than its upstream keepalive_timeout (60 s), so the proxy, not the node,
# closes idle connections, and nginx never writes a request into one the node just closed.
KEEP_ALIVE_SECONDS = 75
# How often a starting node looks whether uvicorn listens yet (to tell the supervisor).
STARTED_POLL_SECONDS = 0.05


class ConfigurationError(Exception):
    """The settings cannot work (said before anything starts)."""


def check_settings(settings: Settings) -> None:
    if settings.behind_proxy and not settings.trusted_proxies:
        raise ConfigurationError(
            "behind a proxy the IdP needs IDP_TRUSTED_PROXIES (the proxy's addresses): "
            "without them no certificate login can succeed"
        )


def _uvicorn_config(app: FastAPI, settings: Settings, log_level: str) -> uvicorn.Config:
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_level": log_level,
        # The peer address must stay the proxy's: it decides whether the certificate header
        # is believed. X-Forwarded-For is never used for that.
        "proxy_headers": False,
        "server_header": False,
        # idp.ops.middleware writes a JSON access line with the request id instead.
        "access_log": False,
        # Idle keep-alive connections must not hold a stopping node up.
        "timeout_graceful_shutdown": 5,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        # uvicorn bounds neither the size nor the time of a request head: this does.
        "http": bounded_http_protocol(RequestLimits(timeout=settings.request_timeout_seconds)),
    }
    if settings.behind_proxy:
        return uvicorn.Config(app, **common)
    return uvicorn.Config(
        app, ssl_certfile=str(settings.tls_cert), ssl_keyfile=str(settings.tls_key), **common
    )


def listener_limits(settings: Settings) -> ListenerLimits:
    return ListenerLimits(
        tls_hello=settings.cert_tls_hello_timeout_seconds,
        handshake=settings.cert_handshake_timeout_seconds,
        keep_alive=settings.cert_keep_alive_timeout_seconds,
        request=settings.cert_request_timeout_seconds,
    )


@dataclass(frozen=True)
class NodeProcess:
    """How this process serves. The defaults are a node that is one process."""

    # Listening sockets already bound (a worker's: the supervisor's, shared by every worker),
    # for uvicorn and for the certificate listener; None: each binds its host and port itself.
    sockets: list[socket.socket] | None = None
    card_sockets: list[socket.socket] | None = None
    # Sweep expired rows here; one process of a node is enough.
    sweep: bool = True
    # Called once, when uvicorn and the certificate listener accept connections.
    on_started: Callable[[], None] | None = None


def _certificate_listener(
    app: FastAPI, settings: Settings, process: NodeProcess, server: uvicorn.Server
) -> CertificateListener | None:
    """The embedded card listener; None behind a proxy (nginx asks for the card there)."""
    if settings.behind_proxy:
        return None
    return CertificateListener(
        app,
        host=settings.host,
        port=settings.cert_port,
        cert_file=settings.tls_cert,
        key_file=settings.tls_key,
        strip_header=settings.client_cert_header,
        sockets=process.card_sockets,
        limits=listener_limits(settings),
        server_state=server.server_state,
    )


def run_node(
    app: FastAPI, settings: Settings, log_level: str, process: NodeProcess | None = None
) -> None:
    """Serve ``app`` (uvicorn, the certificate listener unless behind a proxy, the sweeper)
    until uvicorn is told to stop (SIGTERM, SIGINT)."""
    process = process or NodeProcess()
    server = uvicorn.Server(_uvicorn_config(app, settings, log_level))
    listener = _certificate_listener(app, settings, process, server)
    services = app.state.services
    metrics = app.state.metrics

    def count_swept(deleted: dict[str, int]) -> None:
        for table, count in deleted.items():
            metrics.swept_rows.labels(table).inc(count)

    async def main() -> None:
        background = []
        if process.sweep:
            background.append(
                asyncio.create_task(
                    run_sweeper(
                        services.database,
                        interval_seconds=settings.sweep_interval_seconds,
                        grace=dt.timedelta(seconds=settings.sweep_grace_seconds),
                        on_swept=count_swept,
                    )
                )
            )
        if services.database.in_process:
            background.append(asyncio.create_task(run_wal_checkpoints(services.database)))
        if listener is not None:
            await listener.start()
        if process.on_started is not None:
            background.append(asyncio.create_task(_tell_started(server, process.on_started)))
        try:
            await server.serve(sockets=process.sockets)
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if listener is not None:
                await listener.close()
            services.database.dispose()

    # Everything built so far (the app, metadata, schemas, libraries) lives as long as the
    # process: out of the collector's sight, a full collection no longer walks it, which cut
    # the pauses that made the slowest of many concurrent requests wait.
    gc.freeze()
    # uvloop: the event loop in C. Under load most of a node's time is per-request overhead
    # (TLS records, HTTP parsing, task switches), where it is markedly cheaper than asyncio's.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


async def _tell_started(server: uvicorn.Server, on_started: Callable[[], None]) -> None:
    # uvicorn has no "listening" hook; its flag is set once every socket accepts.
    while not server.started:
        await asyncio.sleep(STARTED_POLL_SECONDS)
    on_started()

"""One worker process of a node with several (``idp serve --workers N``).

Started by :mod:`idp.server.supervisor` (multiprocessing, "spawn": a fresh interpreter, so no
state of the supervisor is inherited by accident). A worker is a whole node in all but its
ports: its own app, database pool and event loop. It binds the node's ports itself with
``SO_REUSEPORT``, so the kernel spreads new connections over the workers, and it tells the
supervisor once it listens.

What the supervisor relies on: a worker never migrates the database (the supervisor has done
that once); it exits 0 after SIGTERM once uvicorn has finished its graceful shutdown; it
ignores SIGINT outside uvicorn (the supervisor decides when to stop; a terminal's Ctrl-C
reaches every process of the group); and it stops with the supervisor if that is killed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType

from idp.app import create_app
from idp.config import Settings
from idp.ops.metrics import use_worker_metrics
from idp.server.logging_setup import configure_logging
from idp.server.run import NodeProcess, run_node

logger = logging.getLogger("idp.worker")
# uvicorn's default listen backlog.
BACKLOG = 2048
PR_SET_PDEATHSIG = 1
READY_MESSAGE = b"listening"


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker is started with (pickled to the new interpreter)."""

    settings: Settings
    index: int
    log_level: str
    metrics_dir: Path
    supervisor_pid: int


def bind_shared_sockets(host: str, port: int) -> list[socket.socket]:
    """Listening TCP sockets on every address of ``host`` at ``port``, with ``SO_REUSEPORT``:
    the node's other workers bind the same, and the kernel spreads connections over them."""
    addresses = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, _name, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, protocol)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # As asyncio does: an IPv6 socket must not also take the IPv4 address.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _stop_with_supervisor(supervisor_pid: int) -> None:
    # A SIGKILLed supervisor cannot stop its workers: the kernel sends them SIGTERM instead.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != supervisor_pid:  # it died before prctl took effect
        sys.exit(0)


def _exit_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    # Also what uvicorn re-raises after its graceful shutdown: the cleanup in run_node's
    # `finally` runs as SystemExit passes, and the worker exits 0.
    raise SystemExit(0)


def run_worker(spec: WorkerSpec, ready: Connection) -> None:
    """The worker's main (the target of the supervisor's ``Process``)."""
    _stop_with_supervisor(spec.supervisor_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    settings = spec.settings
    pid = os.getpid()
    configure_logging(
        spec.log_level, node=settings.node_name, process={"worker": spec.index, "pid": pid}
    )
    use_worker_metrics(spec.metrics_dir)
    app = create_app(settings)
    app.state.worker = {"worker": spec.index, "pid": pid}

    def tell_started() -> None:
        ready.send_bytes(READY_MESSAGE)
        ready.close()

    try:
        sockets = bind_shared_sockets(settings.host, settings.port)
    except OSError as exc:
        # Another program has the port (without SO_REUSEPORT): the supervisor stops the node.
        logger.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        sys.exit(1)
    process = NodeProcess(
        sockets=sockets,
        reuse_port=True,
        sweep=spec.index == 0,
        on_started=tell_started,
    )
    run_node(app, settings, spec.log_level, process)

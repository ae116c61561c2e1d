"""One worker process of a node with several (``idp serve --workers N``).

Started by :mod:`idp.server.supervisor` (multiprocessing, "spawn": a fresh interpreter, so no
state of the supervisor is inherited by accident). A worker is a whole node in all but its
ports: its own app, database pool and event loop. It accepts connections on the listening
sockets the supervisor bound (the same for every worker) and tells the supervisor once it
serves.

What the supervisor relies on: a worker never migrates the database (the supervisor has done
that once); it exits 0 after SIGTERM once uvicorn has finished its graceful shutdown; it
ignores SIGINT outside uvicorn (the supervisor decides when to stop; a terminal's Ctrl-C
reaches every process of the group); and it stops with the supervisor if that is killed.
"""

from __future__ import annotations

import ctypes
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
    # The node's listening sockets (multiprocessing duplicates them into the new process).
    sockets: list[socket.socket]
    card_sockets: list[socket.socket]  # empty behind a proxy


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

    process = NodeProcess(
        sockets=spec.sockets,
        card_sockets=spec.card_sockets or None,
        sweep=spec.index == 0,
        on_started=tell_started,
    )
    run_node(app, settings, spec.log_level, process)

"""A node of several worker processes: ``idp serve --workers N`` (``IDP_WORKERS``).

A node that is one Python process uses about one core. With N workers the ``idp serve``
process becomes a supervisor that serves nothing itself:

1. Once, before any worker starts, it does what must not happen N times at once —
   applying the migrations (where ``migrate_on_start`` says so), making the pairwise secret
   and the OIDC keys on first start — by building the services as ``create_app`` does; that
   also loads the keys, trust anchors and metadata, so a bad configuration is one clear
   error here. Workers then only check that the schema is the newest.
2. It makes a private directory for the workers' metrics (prometheus_client's multiprocess
   mode, see :mod:`idp.ops.metrics`), removed when it returns.
3. It binds the node's ports once (:func:`bind_node_sockets`; a port another process holds
   stops it here) and starts N workers (:mod:`idp.server.worker`, multiprocessing "spawn"),
   each handed the same listening sockets. A worker takes a new connection only when its event
   loop gets round to it, so the connections go to whichever worker is free. (With
   ``SO_REUSEPORT`` the kernel had spread them by a hash of the addresses, blind to load: one
   worker's queue grew while the other idled, and at eight logins at a time an eighth of the
   machine stood idle; benchmarks/README.md.) Worker 0 also sweeps expired rows.
4. A worker that dies is replaced under the same index, after a delay that doubles while its
   replacements die young (:data:`RESTART_DELAY_MIN_SECONDS` up to
   :data:`RESTART_DELAY_MAX_SECONDS`), so a crash loop does not spin; each death is logged as
   the event ``worker.exited``. A worker of the first generation that dies before it listens
   stops the node instead (:class:`WorkerStartError`): that is a configuration error, such as
   a port another program holds, not something to retry.
5. On SIGTERM or SIGINT it sends SIGTERM to every worker (uvicorn's graceful shutdown), waits
   up to :data:`STOP_TIMEOUT_SECONDS`, kills what is left, and returns.

Workers stop by themselves if the supervisor is killed (see :mod:`idp.server.worker`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from prometheus_client.multiprocess import mark_process_dead

from idp.app import build_components
from idp.config import Settings
from idp.server.logging_setup import configure_logging
from idp.server.worker import READY_MESSAGE, WorkerSpec, run_worker

logger = logging.getLogger("idp.supervisor")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# uvicorn's default listen backlog.
BACKLOG = 2048
RESTART_DELAY_MIN_SECONDS = 0.5
RESTART_DELAY_MAX_SECONDS = 30.0
# A worker that lived this long was not crash-looping: its replacement waits the least.
STABLE_SECONDS = 30.0
# uvicorn's graceful shutdown (5 s) plus closing the certificate listener and the database.
STOP_TIMEOUT_SECONDS = 15.0


class WorkerStartError(Exception):
    """A worker of the first generation stopped before it was listening."""


class CannotListen(WorkerStartError):
    """The supervisor could not bind one of the node's ports."""


class PortInUse(CannotListen):
    """Another process already listens on one of the node's ports."""


@dataclass(frozen=True)
class NodeSockets:
    """The node's listening sockets, bound once by the supervisor; every worker accepts on
    them. ``card`` is empty behind a proxy (nginx asks for the card there)."""

    main: list[socket.socket]
    card: list[socket.socket]

    def close(self) -> None:
        for sock in self.main + self.card:
            sock.close()


def bind_node_sockets(settings: Settings) -> NodeSockets:
    """Listen on the node's ports (every address of ``settings.host``). Raises
    :class:`PortInUse` when another process holds one (without ``SO_REUSEPORT`` a second
    ``idp serve`` cannot share a port with the first), :class:`CannotListen` for any other
    reason the address cannot be bound."""
    main = _listen(settings.host, settings.port)
    try:
        card = [] if settings.behind_proxy else _listen(settings.host, settings.cert_port)
    except CannotListen:
        for sock in main:
            sock.close()
        raise
    return NodeSockets(main, card)


def _listen(host: str, port: int) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, _name, address in dict.fromkeys(
            socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        ):
            sock = socket.socket(family, kind, protocol)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # As asyncio does: an IPv6 socket must not also take the IPv4 address.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"port {port} on {host or '*'} is already in use by another process "
                f"(another idp serve?): {exc.strerror}"
            ) from exc
        raise CannotListen(f"cannot listen on port {port} on {host or '*'}: {exc}") from exc
    return sockets


@dataclass
class _Slot:
    """One of the node's N places for a worker; a replacement takes the dead one's index."""

    index: int
    process: BaseProcess | None = None
    # Until the worker says it listens: the pipe it says so on.
    ready: Connection | None = None
    listening: bool = False
    started_at: float = 0.0
    generation: int = 0
    restart_delay: float = 0.0
    restart_at: float | None = None


def supervise(settings: Settings, *, log_level: str = "info") -> None:
    """Serve with ``settings.workers`` worker processes until SIGTERM or SIGINT.

    The caller has checked the settings (:func:`idp.server.run.check_settings`). Raises what
    ``create_app`` raises for a bad configuration, or :class:`WorkerStartError`.
    """
    configure_logging(
        log_level, node=settings.node_name, process={"role": "supervisor", "pid": os.getpid()}
    )
    sockets = bind_node_sockets(settings)
    try:
        prepare_once(settings)
        metrics_dir = Path(tempfile.mkdtemp(prefix="idp-metrics-"))  # mode 0700
        try:
            Supervisor(settings, sockets, log_level=log_level, metrics_dir=metrics_dir).run()
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    finally:
        sockets.close()


def prepare_once(settings: Settings) -> None:
    """Build the components once, as ``create_app`` would, and let them go (see the module doc)."""
    # Without the remote SP metadata aggregate: it starts a refresh thread, which has no
    # business in a process that serves nothing. The workers fetch and verify it.
    components = build_components(settings.model_copy(update={"sp_metadata_aggregate_url": ""}))
    components.services.database.dispose()


class Supervisor:
    """Keeps ``settings.workers`` workers running (see the module doc)."""

    def __init__(
        self, settings: Settings, sockets: NodeSockets, *, log_level: str, metrics_dir: Path
    ) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._sockets = sockets
        # The supervisor has migrated: a worker only checks that the schema is the newest.
        self._worker_settings = settings.model_copy(update={"migrate_on_start": False})
        self._log_level = log_level
        self._metrics_dir = metrics_dir
        self._slots = [_Slot(index) for index in range(settings.workers)]
        self._stop_signal: int | None = None
        self._announced = False

    def run(self) -> None:
        """Start the workers, replace any that die, and stop them all on SIGTERM or SIGINT."""
        with _wake_on_signals(self._note_signal) as wakeup:
            try:
                logger.info(
                    "starting %d workers",
                    len(self._slots),
                    extra={"event": "workers.start", "workers": len(self._slots)},
                )
                for slot in self._slots:
                    self._start(slot)
                while self._stop_signal is None:
                    self._wait(wakeup)
                    self._reap()
                    self._restart_due()
            finally:
                self._stop_all()

    def _note_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum

    # --- starting and watching ----------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        reader, writer = self._context.Pipe(duplex=False)
        spec = WorkerSpec(
            self._worker_settings,
            slot.index,
            self._log_level,
            self._metrics_dir,
            os.getpid(),
            self._sockets.main,
            self._sockets.card,
        )
        process = self._context.Process(
            target=run_worker, args=(spec, writer), name=f"idp-worker-{slot.index}"
        )
        process.start()
        writer.close()  # only the worker's copy stays open: its death reads as EOF here
        slot.process, slot.ready, slot.listening = process, reader, False
        slot.started_at, slot.restart_at = time.monotonic(), None
        logger.info(
            "worker %d started (pid %s)",
            slot.index,
            process.pid,
            extra={"event": "worker.started", "worker": slot.index, "worker_pid": process.pid},
        )

    def _wait(self, wakeup: socket.socket) -> None:
        """Until a signal, a worker's death or "listening", or a replacement's start time."""
        waitables: list[Connection | socket.socket | int] = [wakeup]
        for slot in self._slots:
            if slot.process is not None:
                waitables.append(slot.process.sentinel)
            if slot.ready is not None:
                waitables.append(slot.ready)
        for item in wait(waitables, timeout=self._until_next_restart()):
            if item is wakeup:
                with contextlib.suppress(BlockingIOError):
                    wakeup.recv(4096)
            elif isinstance(item, Connection):
                self._read_ready(item)

    def _until_next_restart(self) -> float | None:
        due = [slot.restart_at for slot in self._slots if slot.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _read_ready(self, connection: Connection) -> None:
        slot = next(slot for slot in self._slots if slot.ready is connection)
        # EOF: it died first; its sentinel says so.
        with contextlib.suppress(EOFError, OSError):
            slot.listening = connection.recv_bytes() == READY_MESSAGE
        connection.close()
        slot.ready = None
        if slot.listening:
            logger.info(
                "worker %d is listening",
                slot.index,
                extra={"event": "worker.listening", "worker": slot.index},
            )
        if not self._announced and all(slot.listening for slot in self._slots):
            self._announced = True
            logger.info(
                "node serving with %d workers",
                len(self._slots),
                extra={"event": "workers.listening", "workers": len(self._slots)},
            )

    def _reap(self) -> None:
        for slot in self._slots:
            process = slot.process
            if process is None or process.exitcode is None:
                continue
            pid, code = process.pid, process.exitcode
            self._forget(slot)
            if self._stop_signal is not None:
                continue  # a worker that saw the signal itself: no replacement
            if slot.generation == 0 and not slot.listening:
                raise WorkerStartError(
                    f"worker {slot.index} stopped before it was listening ({_describe(code)}); "
                    "its log lines above say why"
                )
            self._schedule_restart(slot, pid, code)

    def _schedule_restart(self, slot: _Slot, pid: int | None, code: int) -> None:
        lived = time.monotonic() - slot.started_at
        if lived >= STABLE_SECONDS:
            slot.restart_delay = RESTART_DELAY_MIN_SECONDS
        else:
            slot.restart_delay = min(
                max(slot.restart_delay * 2, RESTART_DELAY_MIN_SECONDS), RESTART_DELAY_MAX_SECONDS
            )
        slot.restart_at = time.monotonic() + slot.restart_delay
        logger.warning(
            "worker %d (pid %s) %s after %.1f s; a replacement starts in %.1f s",
            slot.index,
            pid,
            _describe(code),
            lived,
            slot.restart_delay,
            extra={
                "event": "worker.exited",
                "worker": slot.index,
                "worker_pid": pid,
                "exit_code": code,
                "restart_delay_s": slot.restart_delay,
            },
        )

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if slot.restart_at is not None and slot.restart_at <= now:
                slot.generation += 1
                self._start(slot)

    def _forget(self, slot: _Slot) -> None:
        """Let go of a worker that has exited (its counters stay in the metrics: they count)."""
        if slot.process is not None and slot.process.pid is not None:
            mark_process_dead(slot.process.pid, str(self._metrics_dir))
        if slot.ready is not None:
            slot.ready.close()
            slot.ready = None
        slot.process = None

    # --- stopping -------------------------------------------------------------------------

    def _stop_all(self) -> None:
        # Its copies would keep the ports open (connections queueing that no worker takes)
        # after the workers have closed theirs.
        self._sockets.close()
        running = [slot for slot in self._slots if slot.process is not None]
        signame = signal.Signals(self._stop_signal).name if self._stop_signal else "an error"
        logger.info(
            "stopping (%s): %d workers running",
            signame,
            len(running),
            extra={"event": "workers.stop", "workers": len(running)},
        )
        for slot in running:
            assert slot.process is not None
            if slot.process.exitcode is None:
                slot.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        outcomes = []
        for slot in running:
            assert slot.process is not None
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.exitcode is None:
                logger.warning(
                    "worker %d did not stop in time: killing it",
                    slot.index,
                    extra={"event": "worker.killed", "worker": slot.index},
                )
                slot.process.kill()
                slot.process.join()
            outcomes.append(f"worker {slot.index} {_describe(slot.process.exitcode or 0)}")
            self._forget(slot)
        logger.info(
            "workers stopped: %s", ", ".join(outcomes) or "none", extra={"event": "workers.stopped"}
        )


def _describe(exit_code: int) -> str:
    if exit_code < 0:
        return f"was killed by {signal.Signals(-exit_code).name}"
    return f"exited with code {exit_code}"


@contextlib.contextmanager
def _wake_on_signals(
    handler: Callable[[int, FrameType | None], None],
) -> Iterator[socket.socket]:
    """Handle SIGTERM and SIGINT with ``handler``; yields a socket that becomes readable when
    one arrives, so that a wait on the workers wakes up at once."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield reader
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        signal.set_wakeup_fd(previous_fd)
        reader.close()
        writer.close()

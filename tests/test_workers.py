"""``idp serve --workers 2``: one node, a supervisor and two worker processes sharing its ports.

A real node (embedded: HTTPS and the certificate listener, SQLite) is started as a subprocess,
as the other integration tests do, and driven over TLS. Which worker answered is read from
``/healthz`` (``worker`` and ``pid``). The tests run in file order; the last one stops the node.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from idp.config import Settings, parse_workers
from idp.server.supervisor import CannotListen, PortInUse, bind_node_sockets
from siths_testkit.login_driver import card_login
from siths_testkit.pki import TestPki
from tests.helpers import saml_sp
from tests.helpers.idp_process import idp_env, import_people
from tests.helpers.support import (
    VENV_BIN,
    RunningServer,
    free_port,
    run_cli,
    start_server,
    tls_context,
)

SAMBI_HSA_ID = "http://sambi.se/attributes/1/employeeHsaId"
WORKERS = 2
# Fresh connections made to see which worker answers.
CONNECTIONS = 20
HEALTHZ_COUNT = re.compile(
    r'^idp_http_request_duration_seconds_count\{method="GET",route="/healthz",status="2xx"\} '
    r"(\S+)$",
    re.MULTILINE,
)


@dataclass
class WorkerNode:
    server: RunningServer
    base_url: str
    cert_login_url: str
    pki: TestPki
    sp: saml_sp.TestServiceProvider
    tmp_dir: Path

    @property
    def supervisor_pid(self) -> int:
        return self.server.process.pid

    def client(self, card: str | None = None) -> httpx.Client:
        files = (self.pki.cards[card].cert, self.pki.cards[card].key) if card else (None, None)
        return httpx.Client(verify=tls_context(self.pki.tls_ca_cert, *files), timeout=30)

    def healthz(self, url: str | None = None) -> dict:
        """``/healthz`` over a new connection (taken by whichever worker accepts first)."""
        with self.client() as client:
            response = client.get(f"{url or self.base_url}/healthz")
        response.raise_for_status()
        return response.json()

    def metrics(self) -> str:
        with self.client() as client:
            response = client.get(f"{self.base_url}/metrics")
        response.raise_for_status()
        return response.text

    def healthz_count(self) -> float:
        found = HEALTHZ_COUNT.search(self.metrics())
        return float(found.group(1)) if found else 0.0

    def log_events(self, event: str) -> list[dict]:
        events = []
        for line in self.server.log().splitlines():
            if line.startswith("{") and f'"event": "{event}"' in line:
                events.append(json.loads(line))
        return events

    def worker_pids(self) -> dict[int, int]:
        """Each worker index's newest process, from the supervisor's log."""
        return {e["worker"]: e["worker_pid"] for e in self.log_events("worker.started")}

    @contextlib.contextmanager
    def only_worker(self, index: int) -> Iterator[int]:
        """Every other worker stopped (SIGSTOP: alive, but its event loop takes nothing) until
        the block ends; yields the pid of the one left."""
        pids = self.worker_pids()
        others = [pid for worker, pid in pids.items() if worker != index]
        for pid in others:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield pids[index]
        finally:
            for pid in others:
                os.kill(pid, signal.SIGCONT)


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def node(
    test_pki: TestPki, ocsp_responder: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerNode]:
    work = tmp_path_factory.mktemp("workers")
    tmp_dir = work / "tmp"
    tmp_dir.mkdir()
    env = idp_env(
        test_pki,
        work,
        IDP_OIDC_KEYS_DIR=str(work / "oidc-keys"),
        # Where the supervisor makes the workers' metrics directory (tempfile).
        TMPDIR=str(tmp_dir),
    )
    sp_metadata_dir = Path(env["IDP_SP_METADATA_DIR"])
    base_url, cert_login_url = env["IDP_BASE_URL"], env["IDP_CERT_LOGIN_URL"]
    import_people(env, work)
    server = start_server(
        [str(VENV_BIN / "idp"), "serve", "--workers", str(WORKERS), "--log-level", "info"],
        env,
        f"{base_url}/healthz",
        test_pki.tls_ca_cert,
        work / "idp.log",
    )
    try:
        # /healthz answered: one worker listens. The supervisor says when all do.
        _wait_for(lambda: '"event": "workers.listening"' in server.log(), "both workers")
        sp = saml_sp.sp_of_running_idp(work, base_url, test_pki.tls_ca_cert, sp_metadata_dir)
        yield WorkerNode(server, base_url, cert_login_url, test_pki, sp, tmp_dir)
    finally:
        server.stop()


# --- the option -------------------------------------------------------------------------------


@pytest.mark.integration  # runs the CLI in a process of its own
def test_workers_must_be_a_positive_number_or_auto(tmp_path: Path) -> None:
    assert parse_workers("3") == 3
    assert parse_workers("auto") == (os.cpu_count() or 1)
    for bad in ("0", "-1", "two", "1.5", ""):
        with pytest.raises(ValueError, match="at least 1, or 'auto'"):
            parse_workers(bad)
    env = {"IDP_VAR_DIR": str(tmp_path / "var"), "IDP_PKI_DIR": str(tmp_path / "pki")}
    for bad in ("0", "several"):
        result = run_cli([str(VENV_BIN / "idp"), "serve", "--workers", bad], env)
        assert result.returncode == 2
        assert "Invalid value for '--workers'" in result.stderr
        assert "at least 1, or 'auto'" in result.stderr
    result = run_cli([str(VENV_BIN / "idp"), "serve"], {**env, "IDP_WORKERS": "0"})
    assert result.returncode == 1
    assert "IDP_WORKERS" in result.stderr and "at least 1, or 'auto'" in result.stderr


def test_the_supervisor_binds_each_port_once_for_all_workers(tmp_path: Path) -> None:
    port, cert_port = free_port(), free_port()
    settings = Settings(var_dir=tmp_path, host="127.0.0.1", port=port, cert_port=cert_port)
    sockets = bind_node_sockets(settings)
    try:
        assert [s.getsockname() for s in sockets.main] == [("127.0.0.1", port)]
        assert [s.getsockname() for s in sockets.card] == [("127.0.0.1", cert_port)]
        for sock in sockets.main + sockets.card:
            # Shared by handing the socket over, never by binding again beside it.
            assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is already in use"):
            bind_node_sockets(settings)
    finally:
        sockets.close()
    behind_proxy = bind_node_sockets(settings.model_copy(update={"behind_proxy": True}))
    behind_proxy.close()
    assert behind_proxy.card == []


def test_a_port_that_cannot_be_bound_leaves_nothing_bound(tmp_path: Path) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        settings = Settings(var_dir=tmp_path, host="127.0.0.1", port=free_port(), cert_port=port)
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1"):
            bind_node_sockets(settings)
    # The main port, bound before the card port failed, was let go.
    bind_node_sockets(settings).close()
    # An address this machine does not have (TEST-NET-1) is not "in use": it is said as it is.
    elsewhere = Settings(var_dir=tmp_path, host="192.0.2.1", port=free_port())
    with pytest.raises(CannotListen, match=r"cannot listen on port \d+ on 192\.0\.2\.1") as raised:
        bind_node_sockets(elsewhere)
    assert not isinstance(raised.value, PortInUse)


# --- one node, two workers -------------------------------------------------------------------


def test_both_workers_serve_both_ports(node: WorkerNode) -> None:
    workers = node.log_events("worker.started")
    assert sorted(event["worker"] for event in workers) == list(range(WORKERS))
    pids = node.worker_pids()
    # The workers are the supervisor's children, not the supervisor itself.
    assert set(pids.values()) <= _children(node.supervisor_pid)
    answers = []
    for index in range(WORKERS):
        # With the other worker stopped every new connection, on either port, is this one's:
        # a connection never waits for a worker that is not taking any (as it did when the
        # kernel spread connections over SO_REUSEPORT sockets by their addresses).
        with node.only_worker(index) as pid:
            for url in (node.base_url, node.cert_login_url):
                for _ in range(CONNECTIONS // 2):
                    answer = node.healthz(url)
                    assert (answer["worker"], answer["pid"]) == (index, pid), url
                    answers.append(answer)
    # Their log lines say which worker wrote them; the supervisor's say it is the supervisor.
    lines = [json.loads(line) for line in node.server.log().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "idp.access"]
    assert {(line["worker"], line["pid"]) for line in access} >= {
        (answer["worker"], answer["pid"]) for answer in answers
    }
    supervisor = [line for line in lines if line["logger"] == "idp.supervisor"]
    assert supervisor and all(line["role"] == "supervisor" for line in supervisor)


def test_metrics_count_every_workers_requests(node: WorkerNode) -> None:
    before = node.healthz_count()
    answered_by = set()
    for index in range(WORKERS):
        with node.only_worker(index):
            answered_by |= {node.healthz()["worker"] for _ in range(CONNECTIONS // WORKERS)}
    assert answered_by == set(range(WORKERS))
    # A worker counts a request just after sending its answer: give the last one a moment.
    _wait_for(lambda: node.healthz_count() == before + CONNECTIONS, "the count", 5)
    # Whichever worker answers the scrape reports the whole node.
    for _ in range(6):
        assert node.healthz_count() == before + CONNECTIONS
    text = node.metrics()
    # The gauges from the shared database once, not once per worker.
    for gauge in ("idp_orders_pending", "idp_pending_logins", "idp_sso_sessions_active"):
        assert len(re.findall(rf"^{gauge} ", text, re.MULTILINE)) == 1, gauge


def test_card_login_completes(node: WorkerNode) -> None:
    login_url, request_id = node.sp.login_url()
    with node.client("anna") as client:
        result = card_login(client, login_url, node.base_url)
    assert result.acs_url == node.sp.acs_url
    ava = node.sp.parse(result.saml_response, request_id).ava
    assert ava[SAMBI_HSA_ID] == ["SE2120001355-E0001"]
    assert re.search(
        r'^idp_logins_total\{method="[^"]+",outcome="success"\} 1\.0$', node.metrics(), re.MULTILINE
    )


def test_a_login_goes_on_at_the_worker_that_is_free(node: WorkerNode) -> None:
    """Both of a login's connections (the IdP's port, then the card's) are taken by the worker
    that is free, whichever took the SP's redirect."""
    for index in range(WORKERS):
        login_url, request_id = node.sp.login_url()
        with node.only_worker(index), node.client("anna") as client:
            result = card_login(client, login_url, node.base_url)
        ava = node.sp.parse(result.saml_response, request_id).ava
        assert ava[SAMBI_HSA_ID] == ["SE2120001355-E0001"]


def test_a_killed_worker_is_replaced_and_its_counts_are_kept(node: WorkerNode) -> None:
    before = node.healthz_count()
    victim = node.healthz()
    os.kill(victim["pid"], signal.SIGKILL)
    _wait_for(
        lambda: any(e["worker_pid"] == victim["pid"] for e in node.log_events("worker.exited")),
        "the supervisor to see the worker die",
    )
    exited = next(e for e in node.log_events("worker.exited") if e["worker_pid"] == victim["pid"])
    assert exited["worker"] == victim["worker"]
    assert exited["exit_code"] == -signal.SIGKILL
    assert exited["restart_delay_s"] > 0
    # The survivor serves meanwhile; the replacement takes the dead worker's index.
    seen: dict[int, int] = {}

    def replaced() -> bool:
        answer = node.healthz()
        seen[answer["worker"]] = answer["pid"]
        return len(seen) == WORKERS and victim["pid"] not in seen.values()

    _wait_for(replaced, "a replacement worker to answer")
    assert set(seen.values()) <= _children(node.supervisor_pid)
    # The dead worker's requests still count; the one that found it is counted too.
    after = node.healthz_count()
    assert after >= before + 1 + len(seen)


def test_sigterm_stops_the_supervisor_and_every_worker(node: WorkerNode) -> None:
    # Last: this stops the module's node.
    children = _children(node.supervisor_pid)
    assert len(children) >= WORKERS  # the workers (and multiprocessing's resource tracker)
    assert len(list(node.tmp_dir.glob("idp-metrics-*"))) == 1
    node.server.process.send_signal(signal.SIGTERM)
    assert node.server.process.wait(timeout=30) == 0
    # The workers are gone when the supervisor returns; the resource tracker leaves once it
    # reads the end of its pipe from the exited supervisor.
    left = [pid for pid in children if _alive(pid)]
    if left:
        # A process already exiting shows an empty command line (the tracker, when it reads
        # that end just now); any other command line is a worker left over. Either way every
        # one of them must then be gone within seconds.
        described = {pid: _command_line(pid) for pid in left}
        others = {
            pid: line for pid, line in described.items() if line and "resource_tracker" not in line
        }
        assert not others, others
        _wait_for(lambda: not any(_alive(pid) for pid in left), f"{described} to exit", 10)
    assert node.log_events("workers.stopped")
    assert list(node.tmp_dir.glob("idp-metrics-*")) == []


@pytest.mark.integration  # runs the CLI in a process of its own
def test_a_second_node_on_a_port_in_use_refuses_to_start(tmp_path: Path) -> None:
    """It must not share the port silently with the first (issue 16)."""
    port = free_port()
    held = [socket.create_server(("127.0.0.1", port))]  # as a running node's supervisor does
    try:
        env = {
            "IDP_VAR_DIR": str(tmp_path / "var"),
            "IDP_PKI_DIR": str(tmp_path / "pki"),
            "IDP_HOST": "127.0.0.1",
            "IDP_PORT": str(port),
            "IDP_CERT_PORT": str(free_port()),
        }
        result = run_cli([str(VENV_BIN / "idp"), "serve", "--workers", "2"], env)
    finally:
        for sock in held:
            sock.close()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"port {port} on 127.0.0.1 is already in use by another process" in result.stderr

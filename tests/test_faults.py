"""Faults under a steady load of card logins: every failure is the IdP's own page with a reason
code, ``/readyz`` tells the truth, the service heals without help, no login is lost or doubled.

The multi-node set-up of :mod:`tests.helpers.multinode_support` (nginx + two ``--behind-proxy``
nodes + PostgreSQL) runs with this module's own test PKI and OCSP responder (so that the responder
can be stopped without touching the session's). A few browsers log in with their cards in a loop
while, one test at a time, PostgreSQL is restarted, PostgreSQL is stopped for several seconds, a
node is killed, the OCSP responder is stopped; then an embedded node (SQLite, its var/ on a small
tmpfs) has its disk filled. Each test prints its figures (attempted / ok / failed by reason,
recovery time) to the terminal, even without ``-s``.

What every test asserts about its window of load:

- a failed login ended on a page of the IdP with a reason code (never nginx's 502 page, never a
  dropped connection);
- no login was lost: every login whose browser got a Response is completed in the database with
  that Response answering its request; a login completed in the database whose Response never
  arrived is handed out when the browser repeats the last step (the documented way back);
- no login was doubled: the audit has exactly one ``login``/``success`` per completed login;
- recovery came without help within :data:`RECOVERY_BOUND_SECONDS`: ``/readyz`` of every node
  is 200 again, and every login started after that point succeeded;
- no node printed a raw traceback (every error is one JSON line).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from siths_testkit.local_cluster import ClusterError
from siths_testkit.login_driver import response_summary
from siths_testkit.pki import TestPki, init_test_pki
from tests.conftest import OCSP_NEXT_UPDATE_SECONDS
from tests.helpers import saml_sp
from tests.helpers.idp_process import DIRECTORY_CSV, GOTEBORG, PRIVATE_PROVIDER
from tests.helpers.multinode_support import Cluster, running_cluster, start_node
from tests.helpers.support import (
    VENV_BIN,
    RunningServer,
    free_port,
    parse_page,
    reason_code,
    run_cli,
    start_server,
    tls_context,
)

SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
CARDS = ("anna", "bertil")
BROWSERS = 3  # concurrent browsers, each logging in again as soon as its last login ended
PAUSE_BETWEEN_LOGINS = 0.05
BASELINE_SECONDS = 2.0  # load before the fault
AFTER_HEAL_SECONDS = 4.0  # load after the fault was healed (or left to heal)
POSTGRES_OUTAGE_SECONDS = 6.0
OCSP_OUTAGE_SECONDS = OCSP_NEXT_UPDATE_SECONDS + 4.0  # past the cached good answers
DISK_FULL_SECONDS = 5.0
NODE_DOWN_SECONDS = 3.0
# The stated promise: this long after the cause is gone, everything works again.
RECOVERY_BOUND_SECONDS = 10.0
READY_POLL_SECONDS = 0.2
TMPFS_SIZE = "32m"


# --- what a browser saw ------------------------------------------------------------------------


@dataclass
class Attempt:
    """One card login by one browser: how it ended, and what the database should know of it."""

    card: str
    request_id: str
    started: float
    finished: float = 0.0
    ref: str = ""
    saml_response: str = ""
    failed_status: int | None = None
    failed_path: str = ""
    reason: str | None = None
    transport_error: str = ""
    cookies: httpx.Cookies = field(default_factory=httpx.Cookies)

    @property
    def ok(self) -> bool:
        if not self.saml_response:
            return False
        in_response_to, status = response_summary(self.saml_response)
        return in_response_to == self.request_id and status == SUCCESS

    def outcome(self) -> str:
        if self.ok:
            return "ok"
        if self.transport_error:
            return f"transport: {self.transport_error}"
        return f"{self.failed_status} {self.reason or 'NO REASON CODE'}"


@dataclass
class Target:
    """Where the browsers log in and how the test reads that IdP's database."""

    name: str
    base_url: str
    sp: saml_sp.TestServiceProvider
    ca_file: Path
    card_files: dict[str, tuple[Path, Path]]
    readyz: dict[str, str]  # node name -> its /readyz URL
    pending_states: Callable[[list[str]], dict[str, str]]
    count_successful_logins: Callable[[], int]
    logs: Callable[[], list[Path]]
    _sp_lock: threading.Lock = field(default_factory=threading.Lock)

    def login_url(self) -> tuple[str, str]:
        with self._sp_lock:  # pysaml2's client keeps state while it makes a request
            return self.sp.login_url()


def _absolute(base_url: str, location: str) -> str:
    return base_url + location if location.startswith("/") else location


def _follow(client: httpx.Client, target: Target, url: str, attempt: Attempt) -> httpx.Response:
    answer = client.get(url)
    for _ in range(10):
        if answer.status_code not in (302, 303):
            break
        url = _absolute(target.base_url, answer.headers["location"])
        answer = client.get(url)
    if answer.status_code != 200:
        attempt.failed_status = answer.status_code
        attempt.failed_path = urllib.parse.urlsplit(url).path
        attempt.reason = reason_code(answer.text)
    return answer


def card_login(target: Target, contexts: dict[str, object], card: str) -> Attempt:
    """SP redirect → chooser → certificate login → the page that posts the Response."""
    login_url, request_id = target.login_url()
    attempt = Attempt(card, request_id, time.monotonic())
    with httpx.Client(verify=contexts[card], follow_redirects=False, timeout=30) as client:  # type: ignore[arg-type]
        try:
            chooser = _follow(client, target, login_url, attempt)
            if attempt.failed_status is None:
                href = parse_page(chooser.text).links["method-this-device"]
                attempt.ref = urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)["ref"][0]
                answer = _follow(client, target, href, attempt)
                if attempt.failed_status is None:
                    forms = parse_page(answer.text).forms
                    attempt.saml_response = forms[0]["fields"]["SAMLResponse"] if forms else ""
            if attempt.saml_response:
                response_summary(attempt.saml_response)  # readable, or the next line says why
        except httpx.HTTPError as exc:
            attempt.transport_error = type(exc).__name__
        except Exception as exc:  # a page the flow did not expect: kept as this login's outcome
            attempt.transport_error = f"{type(exc).__name__}: {exc}"[:200]
            attempt.saml_response = ""
        attempt.cookies = httpx.Cookies(client.cookies)
    attempt.finished = time.monotonic()
    return attempt


class Load:
    """:data:`BROWSERS` browsers logging in one after the other until :meth:`stop`."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._contexts = {
            card: tls_context(target.ca_file, *target.card_files[card]) for card in CARDS
        }
        self._threads = [
            threading.Thread(target=self._run, args=(number,), daemon=True)
            for number in range(BROWSERS)
        ]

    def _run(self, number: int) -> None:
        count = number
        while not self._stop.is_set():
            attempt = card_login(self.target, self._contexts, CARDS[count % len(CARDS)])
            with self._lock:
                self.attempts.append(attempt)
            count += 1
            time.sleep(PAUSE_BETWEEN_LOGINS)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


class ReadyWatch:
    """Polls every node's ``/readyz``: (time, node, ready) samples."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.samples: list[tuple[float, str, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._verify = tls_context(target.ca_file)

    def _run(self) -> None:
        with httpx.Client(verify=self._verify, timeout=5) as client:
            while not self._stop.is_set():
                for name, url in self.target.readyz.items():
                    try:
                        ready = client.get(url).status_code == 200
                    except httpx.HTTPError:
                        ready = False
                    self.samples.append((time.monotonic(), name, ready))
                time.sleep(READY_POLL_SECONDS)

    def __enter__(self) -> ReadyWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def dipped(self, name: str) -> bool:
        return any(not ready for _, node, ready in self.samples if node == name)

    def ready_again(self, name: str) -> float | None:
        """When the node answered ready after its last not-ready answer (None: never again)."""
        samples = [(moment, ready) for moment, node, ready in self.samples if node == name]
        last_down = max((moment for moment, ready in samples if not ready), default=None)
        if last_down is None:
            return samples[0][0] if samples else None
        return next((moment for moment, ready in samples if ready and moment > last_down), None)


# --- one fault ------------------------------------------------------------------------------------


@dataclass
class Figures:
    fault: str
    attempted: int
    ok: int
    failed: collections.Counter
    delivered_on_retry: int
    recovery_seconds: float
    readyz_dipped: dict[str, bool]

    def line(self) -> str:
        failed = sum(self.failed.values())
        reasons = ", ".join(f"{reason} ×{count}" for reason, count in self.failed.most_common())
        dipped = ", ".join(
            f"{node}: {'yes' if dip else 'no'}" for node, dip in self.readyz_dipped.items()
        )
        return (
            f"FAULT {self.fault}: attempted {self.attempted}, ok {self.ok}, failed {failed}"
            f"{f' ({reasons})' if reasons else ''}, completed but undelivered and handed out "
            f"on retry {self.delivered_on_retry}, recovered {self.recovery_seconds:.1f} s after "
            f"the cause was gone, /readyz not ready seen [{dipped}]"
        )


def run_fault(
    target: Target,
    fault: str,
    inject: Callable[[], None],
    heal: Callable[[], None],
    report: Callable[[str], None],
    expected_reasons: set[str],
) -> tuple[Figures, ReadyWatch]:
    """Load, ``inject``, ``heal`` (always, even if ``inject`` failed), more load; then every
    check of the module docstring. Returns the figures and the readiness samples."""
    logins_before = target.count_successful_logins()
    with ReadyWatch(target) as watch, Load(target) as load:
        time.sleep(BASELINE_SECONDS)
        try:
            inject()
        finally:
            heal()
            healed_at = time.monotonic()
        time.sleep(AFTER_HEAL_SECONDS)
        # Keep the load on until every node is ready again, or the bound has passed.
        deadline = healed_at + RECOVERY_BOUND_SECONDS
        while time.monotonic() < deadline and not all(
            watch.samples and _ready_now(watch, name) for name in target.readyz
        ):
            time.sleep(0.2)
        time.sleep(1.0)  # a few more logins with everything ready
    attempts = sorted(load.attempts, key=lambda attempt: attempt.started)
    failed = [attempt for attempt in attempts if not attempt.ok]

    # 1. Every failure is the IdP's own page with a reason code.
    wrong = [attempt.outcome() for attempt in failed if attempt.reason is None]
    assert not wrong, f"{fault}: failures without the IdP's page: {wrong}"
    unexpected = {attempt.reason for attempt in failed} - expected_reasons
    assert not unexpected, f"{fault}: unexpected reasons {unexpected}"

    # 2. Recovery without help, within the bound.
    ready_again = {name: watch.ready_again(name) for name in target.readyz}
    assert all(moment is not None for moment in ready_again.values()), ready_again
    last_failure = max((attempt.finished for attempt in failed), default=healed_at)
    recovered_at = max([healed_at, last_failure, *ready_again.values()])  # type: ignore[list-item]
    recovery = recovered_at - healed_at
    assert recovery <= RECOVERY_BOUND_SECONDS, f"{fault}: recovered only after {recovery:.1f} s"
    after = [attempt for attempt in attempts if attempt.started > recovered_at]
    assert after and all(attempt.ok for attempt in after), [a.outcome() for a in after]

    # 3. Nothing lost: the database has every delivered login completed, and a completed login
    #    whose Response never arrived is handed out when its browser repeats the last step.
    states = target.pending_states([attempt.ref for attempt in attempts if attempt.ref])
    for attempt in attempts:
        if attempt.ok:
            assert states.get(attempt.ref) == "completed", (attempt.ref, states.get(attempt.ref))
    undelivered = [a for a in failed if a.ref and states.get(a.ref) == "completed"]
    for attempt in undelivered:
        assert _repeat_last_step(target, attempt).ok, attempt.outcome()
    # 4. Nothing doubled: one audited success per completed login.
    completed = sum(1 for attempt in attempts if states.get(attempt.ref) == "completed")
    assert target.count_successful_logins() - logins_before == completed
    # A sample of the Responses verifies at the SP (signature, audience, InResponseTo).
    for attempt in [attempt for attempt in attempts if attempt.ok][-2:]:
        target.sp.parse(attempt.saml_response, attempt.request_id)

    figures = Figures(
        fault,
        len(attempts),
        len(attempts) - len(failed),
        collections.Counter(attempt.outcome() for attempt in failed),
        len(undelivered),
        recovery,
        {name: watch.dipped(name) for name in target.readyz},
    )
    report(figures.line())
    _assert_no_raw_tracebacks(target)
    return figures, watch


def _ready_now(watch: ReadyWatch, name: str) -> bool:
    latest = [ready for _, node, ready in watch.samples if node == name]
    return bool(latest) and latest[-1]


def _repeat_last_step(target: Target, attempt: Attempt) -> Attempt:
    """The browser reloads ``/login/continue``: the documented way back to a lost answer."""
    repeat = Attempt(attempt.card, attempt.request_id, time.monotonic(), ref=attempt.ref)
    with httpx.Client(
        verify=tls_context(target.ca_file), cookies=attempt.cookies, timeout=30
    ) as client:
        answer = _follow(
            client, target, f"{target.base_url}/login/continue?ref={attempt.ref}", repeat
        )
        forms = parse_page(answer.text).forms
        repeat.saml_response = forms[0]["fields"].get("SAMLResponse", "") if forms else ""
    return repeat


def _assert_no_raw_tracebacks(target: Target) -> None:
    for path in target.logs():
        for line in path.read_text(errors="replace").splitlines():
            assert not line.startswith("Traceback"), f"{path.name}: raw traceback"
            assert "Exception in ASGI application" not in line, f"{path.name}: {line[:200]}"


# --- the set-up --------------------------------------------------------------------------------


@dataclass
class Rig:
    pki: TestPki
    work: Path
    ocsp_args: list[str]
    ocsp_url: str
    ocsp: RunningServer
    cluster: Cluster

    def start_ocsp(self) -> None:
        self.ocsp = start_server(
            self.ocsp_args,
            {},
            f"{self.ocsp_url}/health",
            self.pki.tls_ca_cert,
            self.work / f"ocsp-{time.monotonic_ns()}.log",
        )


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    work = tmp_path_factory.mktemp("faults")
    ocsp_url = f"http://127.0.0.1:{free_port()}"
    pki = init_test_pki(work / "pki", revocation_url=ocsp_url)
    ocsp_args = [
        str(VENV_BIN / "idp"), "pki", "ocsp-responder", "--dir", str(pki.directory),
        "--next-update-seconds", str(OCSP_NEXT_UPDATE_SECONDS), "--log-level", "warning",
    ]  # fmt: skip
    ocsp = start_server(ocsp_args, {}, f"{ocsp_url}/health", pki.tls_ca_cert, work / "ocsp.log")
    rig: Rig | None = None
    try:
        with running_cluster(pki, work / "cluster") as cluster:
            rig = Rig(pki, work, ocsp_args, ocsp_url, ocsp, cluster)
            yield rig
    except ClusterError as exc:
        pytest.fail(f"PostgreSQL or nginx: {exc}")
    finally:
        (rig.ocsp if rig is not None else ocsp).stop()


def _cluster_target(rig: Rig) -> Target:
    cluster = rig.cluster

    def pending_states(refs: list[str]) -> dict[str, str]:
        rows = cluster.query("SELECT id, state FROM pending_logins WHERE id = ANY(%s)", refs)
        return dict(rows)  # type: ignore[arg-type]

    def count_successful_logins() -> int:
        rows = cluster.query(
            "SELECT count(*) FROM audit_events WHERE event = 'login' AND outcome = 'success'"
        )
        return int(rows[0][0])

    return Target(
        "cluster",
        cluster.base_url,
        cluster.sp,
        rig.pki.tls_ca_cert,
        {card: (rig.pki.cards[card].cert, rig.pki.cards[card].key) for card in CARDS},
        {name: f"{node.url}/readyz" for name, node in cluster.nodes.items()},
        pending_states,
        count_successful_logins,
        lambda: sorted((rig.work / "cluster").glob("node-*.log")),
    )


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    def show(line: str) -> None:
        with capsys.disabled():
            print(f"\n{line}", flush=True)

    return show


# --- the faults ----------------------------------------------------------------------------------


def test_postgresql_restart_is_invisible(rig: Rig, report: Callable[[str], None]) -> None:
    postgres = rig.cluster.postgres
    figures, _watch = run_fault(
        _cluster_target(rig),
        "PostgreSQL restart (fast shutdown, start at once)",
        postgres.shutdown,
        postgres.start,
        report,
        expected_reasons={"service_unavailable"},
    )
    # A request whose connection broke is run again once the database answers: users see
    # nothing of a restart.
    assert not figures.failed, figures.line()


def test_postgresql_outage_shows_the_idps_page_and_readyz_says_so(
    rig: Rig, report: Callable[[str], None]
) -> None:
    postgres = rig.cluster.postgres

    def outage() -> None:
        postgres.shutdown()
        time.sleep(POSTGRES_OUTAGE_SECONDS)

    figures, _watch = run_fault(
        _cluster_target(rig),
        f"PostgreSQL stopped for {POSTGRES_OUTAGE_SECONDS:.0f} s",
        outage,
        postgres.start,
        report,
        expected_reasons={"service_unavailable"},
    )
    assert figures.failed, "an outage longer than the retry wait is seen by some users"
    assert all(figures.readyz_dipped.values()), figures.readyz_dipped


def test_killed_node_is_routed_around(rig: Rig, report: Callable[[str], None]) -> None:
    cluster = rig.cluster
    victim = cluster.nodes["b"]

    def kill() -> None:
        os.kill(victim.server.process.pid, signal.SIGKILL)
        victim.server.process.wait(timeout=10)
        time.sleep(NODE_DOWN_SECONDS)

    def restart() -> None:
        # What systemd's Restart=always does for a node (deploy/systemd/); the other node
        # carried the load meanwhile without help.
        cluster.nodes["b"] = start_node(
            cluster.env, "b", rig.work / "cluster", rig.pki.tls_ca_cert, port=victim.port
        )

    figures, _watch = run_fault(
        _cluster_target(rig),
        f"node b killed (SIGKILL), started again after {NODE_DOWN_SECONDS:.0f} s",
        kill,
        restart,
        report,
        expected_reasons=set(),
    )
    assert figures.readyz_dipped["b"] and not figures.readyz_dipped["a"]
    assert not figures.failed, figures.line()


def test_ocsp_outage_fails_closed_with_a_clear_page(
    rig: Rig, report: Callable[[str], None]
) -> None:
    def outage() -> None:
        rig.ocsp.stop()
        time.sleep(OCSP_OUTAGE_SECONDS)

    figures, _watch = run_fault(
        _cluster_target(rig),
        f"OCSP responder stopped for {OCSP_OUTAGE_SECONDS:.0f} s",
        outage,
        rig.start_ocsp,
        report,
        expected_reasons={"revocation_unavailable"},
    )
    assert figures.failed, "no login is let in without a revocation answer (fail closed)"
    # Readiness is about the node: every node answers an OCSP outage the same, correct way, and
    # a load balancer that took them all out would only replace the clear page with nothing.
    assert not any(figures.readyz_dipped.values()), figures.readyz_dipped


# --- a full disk, on the embedded node -----------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(mount_point: Path) -> Iterator[None]:
    """A tmpfs of :data:`TMPFS_SIZE` at ``mount_point`` (root only; the test says so otherwise)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"the disk-full test needs to mount a tmpfs (run as root): {mounted.stderr}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem refuses another byte; return it."""
    filler = directory / "filler"
    chunk = b"\0" * (1024 * 1024)
    with open(filler, "wb", buffering=0) as handle:
        for size in (len(chunk), 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    handle.write(chunk[:size])
    return filler


@pytest.fixture(scope="module")
def embedded(rig: Rig) -> Iterator[Target]:
    """``idp serve`` on SQLite with its var/ on a small tmpfs, using the module's PKI and OCSP."""
    work = rig.work / "embedded"
    var_dir = work / "var"
    with small_filesystem(var_dir):
        sp_metadata_dir = work / "sp-metadata"
        sp_metadata_dir.mkdir(parents=True)
        port, cert_port = free_port(), free_port()
        base_url = f"https://localhost:{port}"
        env = {
            "IDP_VAR_DIR": str(var_dir),
            "IDP_PKI_DIR": str(rig.pki.directory),
            "IDP_SP_METADATA_DIR": str(sp_metadata_dir),
            "IDP_PORT": str(port),
            "IDP_CERT_PORT": str(cert_port),
            "IDP_BASE_URL": base_url,
            "IDP_CERT_LOGIN_URL": f"https://localhost:{cert_port}",
            "IDP_ACCEPTED_ORGANISATIONS": json.dumps([GOTEBORG, PRIVATE_PROVIDER]),
        }
        csv_file = work / "people.csv"
        csv_file.write_text(DIRECTORY_CSV, encoding="utf-8")
        imported = run_cli([str(VENV_BIN / "idp"), "people", "import", str(csv_file)], env)
        assert imported.returncode == 0, imported.stderr
        server = start_server(
            [str(VENV_BIN / "idp"), "serve", "--log-level", "info"],
            env,
            f"{base_url}/healthz",
            rig.pki.tls_ca_cert,
            work / "idp.log",
        )
        try:
            sp = saml_sp.sp_of_running_idp(work, base_url, rig.pki.tls_ca_cert, sp_metadata_dir)
            database = var_dir / "idp.sqlite3"

            def pending_states(refs: list[str]) -> dict[str, str]:
                with contextlib.closing(sqlite3.connect(database)) as connection:
                    rows = connection.execute("SELECT id, state FROM pending_logins").fetchall()
                return {ref: state for ref, state in rows if ref in set(refs)}

            def count_successful_logins() -> int:
                with contextlib.closing(sqlite3.connect(database)) as connection:
                    (count,) = connection.execute(
                        "SELECT count(*) FROM audit_events "
                        "WHERE event = 'login' AND outcome = 'success'"
                    ).fetchone()
                return count

            yield Target(
                "embedded",
                base_url,
                sp,
                rig.pki.tls_ca_cert,
                {card: (rig.pki.cards[card].cert, rig.pki.cards[card].key) for card in CARDS},
                {"embedded": f"{base_url}/readyz"},
                pending_states,
                count_successful_logins,
                lambda: [work / "idp.log"],
            )
        finally:
            server.stop()


def test_full_disk_shows_the_idps_page_and_heals(
    rig: Rig, embedded: Target, report: Callable[[str], None]
) -> None:
    var_dir = rig.work / "embedded" / "var"
    filler = var_dir / "filler"

    def fill_for_a_while() -> None:
        fill(var_dir)
        time.sleep(DISK_FULL_SECONDS)

    figures, _watch = run_fault(
        embedded,
        f"var/ (tmpfs {TMPFS_SIZE}) full for {DISK_FULL_SECONDS:.0f} s, embedded node on SQLite",
        fill_for_a_while,
        lambda: filler.unlink(missing_ok=True),
        report,
        expected_reasons={"service_unavailable"},
    )
    assert figures.readyz_dipped["embedded"], "a full var/ makes the node not ready"
    # SQLite came through intact.
    with contextlib.closing(sqlite3.connect(var_dir / "idp.sqlite3")) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)

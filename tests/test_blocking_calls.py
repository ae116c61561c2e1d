"""Blocking calls on the event loop's thread first (idp.blocking), and what moves them off it.

The unit tests run :class:`BlockingCalls` on a real event loop with a real SQLite file and the
real revocation checker. The integration tests hold up the session's IdP, one process, from
outside (a revocation source that keeps the connection without answering; another process
holding the database's write lock) and show that only the login that has to wait waits: the
node meanwhile answers everyone else at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from idp.blocking import BlockingCalls, WouldWait, before_waiting, note_write_committed
from idp.db import Database
from idp.errors import Refusal
from idp.siths.revocation import RevocationChecker, RevocationPolicy, RevocationProblem
from siths_testkit.pki import TestPki
from siths_testkit.pki.storage import load_certificate
from tests.conftest import IdpUnderTest
from tests.helpers.flows import open_login
from tests.helpers.support import browser, tls_context
from tests.test_revocation import (
    ANNA,
    assert_logged_in,
    audit_mark,
    issue,
    login_this_device,
    responder_url,
)


def _on_loop(call: Callable[[], object], *, loop_first: bool = True) -> tuple[object, int]:
    """``BlockingCalls.run(call)`` on a fresh event loop: its result and the loop's thread."""

    async def run() -> tuple[object, int]:
        return await BlockingCalls(loop_first=loop_first).run(call), threading.get_ident()

    return asyncio.run(run())


# --- the runner -------------------------------------------------------------------------------


def test_a_call_that_waits_for_nothing_runs_on_the_loop_once() -> None:
    threads: list[int] = []
    result, loop_thread = _on_loop(lambda: threads.append(threading.get_ident()) or "done")
    assert (result, threads) == ("done", [loop_thread])


def test_a_call_that_would_wait_runs_again_from_the_start_in_a_worker_thread() -> None:
    threads: list[int] = []

    def call() -> str:
        threads.append(threading.get_ident())
        before_waiting("the network")
        return "answered"

    result, loop_thread = _on_loop(call)
    assert result == "answered"
    assert threads[0] == loop_thread and len(threads) == 2 and threads[1] != loop_thread


def test_after_a_committed_write_the_call_waits_where_it_is() -> None:
    threads: list[int] = []

    def call() -> str:
        threads.append(threading.get_ident())
        note_write_committed()
        before_waiting("the network")  # may no longer start over: returns, the caller waits
        return "waited"

    result, loop_thread = _on_loop(call)
    assert (result, threads) == ("waited", [loop_thread])


def test_a_refusal_is_the_callers_and_the_call_is_not_repeated() -> None:
    calls: list[int] = []

    def call() -> None:
        calls.append(1)
        raise Refusal("some_reason", "refused on the loop")

    with pytest.raises(Refusal, match="some_reason"):
        _on_loop(call)
    assert calls == [1]


def test_without_loop_first_every_call_runs_in_a_worker_thread_and_may_wait() -> None:
    threads: list[int] = []

    def call() -> str:
        threads.append(threading.get_ident())
        before_waiting("the network")
        return "waited"

    result, loop_thread = _on_loop(call, loop_first=False)
    assert result == "waited" and len(threads) == 1 and threads[0] != loop_thread


def test_outside_a_call_nothing_is_refused() -> None:
    before_waiting("a command-line tool's network request")  # no BlockingCalls: returns


def test_would_wait_passes_through_a_catch_all_on_its_way() -> None:
    """Like CancelledError: a best-effort ``except Exception`` does not turn it into a log line
    and carry on with the call half done."""
    with pytest.raises(WouldWait):
        try:
            raise WouldWait("a lock")
        except Exception:
            pytest.fail("WouldWait was caught as an Exception")


# --- the SQLite database --------------------------------------------------------------------


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'blocking.sqlite3'}")
    with database.transaction() as connection:
        connection.execute(text("CREATE TABLE written (caller TEXT, thread INTEGER)"))
    yield database
    database.dispose()


def _write(database: Database, caller: str) -> None:
    with database.transaction() as connection:
        connection.execute(
            text("INSERT INTO written VALUES (:caller, :thread)"),
            {"caller": caller, "thread": threading.get_ident()},
        )


def _rows(database: Database) -> list[tuple[str, int]]:
    with database.transaction() as connection:
        return [tuple(row) for row in connection.execute(text("SELECT * FROM written"))]


def _hold_write_lock(database: Database, seconds: float) -> threading.Thread:
    """Another connection (as another worker process would) holds the write lock."""
    taken = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(str(database.engine.url.database), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        taken.set()
        time.sleep(seconds)
        other.execute("COMMIT")
        other.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(5)
    return holder


def test_the_database_is_in_process_for_sqlite_only(database: Database) -> None:
    assert database.in_process
    server = Database("postgresql://idp@127.0.0.1:1/idp")  # an engine connects only when used
    assert not server.in_process


def test_a_free_database_is_written_on_the_loop(database: Database) -> None:
    _, loop_thread = _on_loop(lambda: _write(database, "free"))
    assert _rows(database) == [("free", loop_thread)]


def test_a_write_lock_held_elsewhere_moves_the_call_to_a_worker_thread(
    database: Database,
) -> None:
    """The loop does not wait for the lock: the call's transaction rolls back and the call
    runs again in a worker thread, which waits for the lock and writes once."""
    holder = _hold_write_lock(database, 0.5)
    attempts: list[int] = []
    invalidated: list[object] = []
    event.listen(database.engine, "invalidate", lambda *args: invalidated.append(args))

    def call() -> None:
        attempts.append(threading.get_ident())
        _write(database, "locked out")

    started = time.monotonic()
    _, loop_thread = _on_loop(call)
    holder.join()
    assert time.monotonic() - started >= 0.4  # it did wait for the lock, in the worker thread
    assert attempts[0] == loop_thread and len(attempts) == 2 and attempts[1] != loop_thread
    assert _rows(database) == [("locked out", attempts[1])]
    # Rolled back as a statement's error, not taken for a broken connection.
    assert invalidated == []


def test_a_lock_held_for_a_moment_is_waited_for_on_the_loop(database: Database) -> None:
    """Shorter than SQLITE_LOCK_WAIT_ON_LOOP_MS: the call asks for the lock again until it is
    free, and runs once, on the loop."""
    released = threading.Event()

    def hold_a_moment() -> None:
        other = sqlite3.connect(str(database.engine.url.database), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        holding.set()
        time.sleep(0.001)
        other.execute("COMMIT")
        released.set()
        other.close()

    holding = threading.Event()
    holder = threading.Thread(target=hold_a_moment)
    attempts: list[int] = []

    def call() -> None:
        attempts.append(threading.get_ident())
        holder.start()
        assert holding.wait(5)
        _write(database, "after a moment")

    _, loop_thread = _on_loop(call)
    holder.join()
    assert released.is_set()
    assert attempts == [loop_thread]
    assert _rows(database) == [("after a moment", loop_thread)]


def test_a_write_refused_for_another_reason_than_a_lock_is_not_retried(tmp_path: Path) -> None:
    """Asking again is for a lock held elsewhere only: a read-only database fails at once."""
    file = tmp_path / "read-only.sqlite3"
    Database(f"sqlite:///{file}").dispose()
    sqlite3.connect(file).execute("CREATE TABLE written (caller TEXT, thread INTEGER)")
    read_only = Database(f"sqlite:///file:{file}?mode=ro&uri=true")
    attempts: list[int] = []

    def call() -> None:
        attempts.append(threading.get_ident())
        _write(read_only, "never")

    try:
        with pytest.raises(OperationalError, match="readonly database"):
            _on_loop(call)
    finally:
        read_only.dispose()
    assert len(attempts) == 1


def test_once_a_write_is_committed_a_later_lock_is_waited_for_on_the_loop(
    database: Database,
) -> None:
    """The first write committed: starting over would write it twice, so the second
    transaction waits for the lock where it is, and each row is written once."""
    holders: list[threading.Thread] = []

    def call() -> None:
        _write(database, "first")
        holders.append(_hold_write_lock(database, 0.3))
        _write(database, "second")

    _, loop_thread = _on_loop(call)
    holders[0].join()
    assert _rows(database) == [("first", loop_thread), ("second", loop_thread)]


def test_reads_alone_do_not_stop_a_call_from_starting_over(database: Database) -> None:
    holder = _hold_write_lock(database, 0.3)
    attempts: list[int] = []

    def call() -> None:
        attempts.append(threading.get_ident())
        _rows(database)  # a committed read: nothing to undo
        _write(database, "after a read")

    _on_loop(call)
    holder.join()
    assert len(attempts) == 2
    assert [caller for caller, _ in _rows(database)] == ["after a read"]


# --- a revocation source on the network ---------------------------------------------------


def test_a_revocation_source_is_never_asked_from_the_loop(test_pki: TestPki) -> None:
    """The checker's fetch runs in a worker thread only: on the loop the call stops before it."""
    card = load_certificate(test_pki.cards["anna"].cert)
    issuer = load_certificate(test_pki.hsa_ca_cert)
    fetched_in: list[int] = []

    def fetch(url: str, body: bytes | None) -> bytes:
        fetched_in.append(threading.get_ident())
        raise RevocationProblem("unreachable", f"{url}: not in this test")

    checker = RevocationChecker(RevocationPolicy(use_crl=False), None, fetch)

    def check() -> str:
        try:
            checker.check(card, issuer, dt.datetime.now(dt.UTC))
        except RevocationProblem as exc:
            return exc.reason
        return "good"

    reason, loop_thread = _on_loop(check)
    assert reason == "unavailable"
    assert fetched_in and loop_thread not in fetched_in


# --- the running IdP: only the login that waits, waits ------------------------------------------


class _Tarpit:
    """A revocation source that takes the connection and never answers: after ``seconds`` it
    hangs up (the IdP then counts the source unreachable)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/ocsp"
        self.asked = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.asked.set()
            threading.Timer(self.seconds, connection.close).start()

    def close(self) -> None:
        self.server.close()


def _answer_times_while(idp: IdpUnderTest, busy: Future, started: threading.Event) -> list[float]:
    """Seconds each ``/healthz`` on the same node took, asked one after another from the
    moment ``started`` is set until ``busy`` is done."""
    assert started.wait(10)
    times: list[float] = []
    with httpx.Client(verify=tls_context(idp.ca_file), timeout=30) as client:
        while not busy.done():
            asked = time.monotonic()
            assert client.get(f"{idp.base_url}/healthz").status_code == 200
            times.append(time.monotonic() - asked)
            time.sleep(0.05)
    return times


def test_a_login_waiting_for_its_revocation_source_holds_up_no_one_else(
    idp: IdpUnderTest, tmp_path: Path
) -> None:
    """A card whose OCSP responder keeps the connection for 2 s: the node answers other
    requests at once meanwhile, and the login ends in by the CRL as before."""
    tarpit = _Tarpit(seconds=2.0)
    try:
        crl = f"{responder_url(idp.pki)}/crl/hsa-id-ca.crl"
        card = issue(idp.pki, tmp_path, ANNA, ocsp=tarpit.url, crl=crl)
        mark = audit_mark(idp)
        with ThreadPoolExecutor(1) as pool:
            login = pool.submit(login_this_device, idp, card)
            times = _answer_times_while(idp, login, tarpit.asked)
            page = login.result()
    finally:
        tarpit.close()
    row = assert_logged_in(idp, page, card, mark)
    assert "revocation good by crl" in row.detail, row
    assert len(times) >= 10, times  # the login did wait about 2 s
    assert max(times) < 0.5, times


def test_a_held_database_lock_holds_up_only_the_requests_that_write(idp: IdpUnderTest) -> None:
    """Another process holds the IdP's write lock for 1.5 s: an AuthnRequest arriving then
    gets its chooser once the lock is free, and the node answers other requests at once
    meanwhile."""
    login_url, _ = idp.sp.login_url()
    holding = threading.Event()

    def hold_then_release() -> None:
        other = sqlite3.connect(str(idp.database_file()), isolation_level=None, timeout=10)
        other.execute("BEGIN IMMEDIATE")
        holding.set()
        time.sleep(1.5)
        other.execute("COMMIT")
        other.close()

    def sso_request() -> httpx.Response:
        assert holding.wait(10)
        with browser(idp.ca_file) as client:
            return open_login(client, login_url, idp.base_url)

    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(hold_then_release)
        chooser = pool.submit(sso_request)
        times = _answer_times_while(idp, held, holding)
        answer = chooser.result()
    assert answer.status_code == 200 and "method-this-device" in answer.text, answer.text[:500]
    assert len(times) >= 8, times
    assert max(times) < 0.5, times

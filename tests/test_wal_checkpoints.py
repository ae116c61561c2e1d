"""SQLite checkpoints kept off the event loop (idp.db, idp.ops.wal_checkpoints).

Whether a checkpoint has run is read from the WAL index (the ``-shm`` file; its layout is
https://sqlite.org/walformat.html): how many frames the write-ahead log holds, and how many of
them have been copied into the database file. Reading it takes no lock and checkpoints nothing,
so what it shows is what the code under test did.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from idp.blocking import BlockingCalls
from idp.db import SQLITE_AUTOCHECKPOINT_PAGES, Database
from idp.ops.wal_checkpoints import run_wal_checkpoints
from tests.conftest import IdpUnderTest
from tests.helpers.flows import open_login
from tests.helpers.support import browser

# 30 transactions of about 50 pages each: well past the automatic checkpoint's 1,000 pages.
TRANSACTIONS = 30
ROW_BYTES = 200_000


def wal_frames(database_file: Path) -> tuple[int, int]:
    """(frames in the write-ahead log, frames of them copied into the database file)."""
    index = Path(f"{database_file}-shm").read_bytes()
    (frames,) = struct.unpack_from("=I", index, 16)  # the first header's mxFrame
    (backfilled,) = struct.unpack_from("=I", index, 96)  # the checkpoint info's nBackfill
    return frames, backfilled


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'wal.sqlite3'}")
    with database.transaction() as connection:
        connection.execute(text("CREATE TABLE pages (body BLOB)"))
    database.checkpoint()
    yield database
    database.dispose()


def _file(database: Database) -> Path:
    return Path(str(database.engine.url.database))


def _write_many(database: Database) -> None:
    for _ in range(TRANSACTIONS):
        with database.transaction() as connection:
            connection.execute(text("INSERT INTO pages VALUES (:body)"), {"body": b"x" * ROW_BYTES})


def _write_many_on_the_loop(database: Database) -> int:
    """``_write_many`` as one call :class:`BlockingCalls` runs on a loop; the loop's thread."""

    async def run() -> int:
        await BlockingCalls(loop_first=True).run(_write_many, database)
        return threading.get_ident()

    return asyncio.run(run())


def test_commits_on_the_loop_never_checkpoint(database: Database) -> None:
    """Also after its first committed write, when the call may wait for a lock again."""
    _write_many_on_the_loop(database)
    frames, backfilled = wal_frames(_file(database))
    assert frames > 1.3 * SQLITE_AUTOCHECKPOINT_PAGES
    assert backfilled == 0


def test_commits_in_a_worker_thread_still_checkpoint_as_sqlite_does(database: Database) -> None:
    worker = threading.Thread(target=_write_many, args=(database,))
    worker.start()
    worker.join()
    frames, backfilled = wal_frames(_file(database))
    # A checkpoint at 1,000 pages copied the log, and a later transaction began it anew.
    assert frames < SQLITE_AUTOCHECKPOINT_PAGES or backfilled > 0, (frames, backfilled)


def test_the_checkpointer_copies_the_log_in_a_worker_thread(database: Database) -> None:
    _write_many_on_the_loop(database)
    threads: list[int] = []
    checkpoint = database.checkpoint

    def noting_thread() -> None:
        threads.append(threading.get_ident())
        checkpoint()

    database.checkpoint = noting_thread  # type: ignore[method-assign]

    async def run_a_while() -> int:
        task = asyncio.create_task(run_wal_checkpoints(database, interval_seconds=0.01))
        deadline = time.monotonic() + 5
        while not threads and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        task.cancel()
        return threading.get_ident()

    loop_thread = asyncio.run(run_a_while())
    assert threads and loop_thread not in threads
    frames, backfilled = wal_frames(_file(database))
    assert frames > SQLITE_AUTOCHECKPOINT_PAGES and backfilled == frames


def test_a_failed_checkpoint_is_logged_and_the_next_one_runs(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    checkpoint = database.checkpoint

    def failing_once() -> None:
        calls.append("called")
        if len(calls) == 1:
            raise OSError("disk gone for a moment")
        checkpoint()

    database.checkpoint = failing_once  # type: ignore[method-assign]
    _write_many_on_the_loop(database)

    async def run_until_second() -> None:
        task = asyncio.create_task(run_wal_checkpoints(database, interval_seconds=0.01))
        deadline = time.monotonic() + 5
        while len(calls) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(run_until_second())
    assert len(calls) >= 2
    assert "checkpointing the database failed" in caplog.text
    frames, backfilled = wal_frames(_file(database))
    assert backfilled == frames > 0


def test_a_server_database_is_not_checkpointed() -> None:
    # Port 1 answers nothing: were a connection tried, this would raise.
    Database("postgresql://idp@127.0.0.1:1/idp").checkpoint()


def test_the_node_checkpoints_what_its_logins_wrote(idp: IdpUnderTest) -> None:
    """The session's IdP (one process, SQLite): what an SSO request committed on the loop is
    copied into the database file within a few seconds, with no commit having done it."""
    login_url, _ = idp.sp.login_url()
    with browser(idp.ca_file) as client:
        assert open_login(client, login_url, idp.base_url).status_code == 200
    deadline = time.monotonic() + 10
    frames, backfilled = wal_frames(idp.database_file())
    while not backfilled == frames > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
        frames, backfilled = wal_frames(idp.database_file())
    assert backfilled == frames > 0, (frames, backfilled)

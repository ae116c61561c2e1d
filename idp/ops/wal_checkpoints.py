"""Checkpoints of an embedded node's SQLite database, in a worker thread.

A checkpoint copies the write-ahead log's pages into the database file and syncs the disk
twice (0.4 to 5 ms each on the development machine). SQLite runs one within whichever commit
leaves the log 1,000 pages long; a node's login transactions commit on the event loop's thread
(:mod:`idp.blocking`), where every request of that process would stand still meanwhile. So
those commits never checkpoint (:mod:`idp.db`), and every node process on SQLite runs
:func:`run_wal_checkpoints` instead.
"""

from __future__ import annotations

import asyncio
import logging

from idp.db import Database

logger = logging.getLogger("idp.ops.wal_checkpoints")

# How long the log may grow between two checkpoints: at 200 logins a second, about 3,000 pages.
CHECKPOINT_INTERVAL_SECONDS = 1.0


async def run_wal_checkpoints(
    database: Database, *, interval_seconds: float = CHECKPOINT_INTERVAL_SECONDS
) -> None:
    """Checkpoint ``database`` every ``interval_seconds``, in a worker thread, until cancelled."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await asyncio.to_thread(database.checkpoint)
        except Exception:
            # The file may be busy for a moment: the next one copies what this one did not.
            logger.exception("checkpointing the database failed")

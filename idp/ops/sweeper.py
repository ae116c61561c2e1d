"""Deleting expired transient rows, periodically, on every node.

Every node sweeps (there is no leader to lose); a sweep is a few bounded ``DELETE … WHERE
<expiry> < cutoff`` statements, so two nodes sweeping at once only find less to delete.
Rows are kept for ``grace`` past their expiry so that a late request still gets the precise
answer ("the login took too long", ``expiredTransaction``) rather than "no such login".
Tables whose rows must outlive their expiry say so in :data:`SWEPT` (OIDC codes are kept
while the tokens they bought may still be presented).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Column, Table, delete, select

from idp.db import Base, Database, import_model_modules
from idp.oidc.codes import RETENTION as OIDC_CODE_RETENTION

logger = logging.getLogger("idp.sweeper")
# One statement deletes at most this many rows, so no sweep holds locks for long.
BATCH_SIZE = 5000


@dataclass(frozen=True)
class SweptTable:
    table: str
    expiry_column: str
    # Kept this much longer than the sweeper's grace (on top of it).
    extra_retention: dt.timedelta = dt.timedelta(0)


SWEPT: tuple[SweptTable, ...] = (
    SweptTable("pending_logins", "expires_at"),
    SweptTable("orders", "expires_at"),
    SweptTable("sso_sessions", "expires_at"),
    SweptTable("seen_messages", "expires_at"),
    SweptTable("revocation_cache", "until"),
    SweptTable("saml_session_participants", "expires_at"),
    SweptTable("oidc_access_tokens", "expires_at"),
    SweptTable("oidc_authorization_codes", "expires_at", OIDC_CODE_RETENTION),
)


def _expiry_column(spec: SweptTable) -> tuple[Table, Column] | None:
    table = Base.metadata.tables.get(spec.table)
    if table is None or spec.expiry_column not in table.c:
        return None
    return table, table.c[spec.expiry_column]


def sweep_expired(
    database: Database, *, grace: dt.timedelta, now: dt.datetime | None = None
) -> dict[str, int]:
    """Delete rows that expired more than ``grace`` ago; return the count per table.

    Blocking: call it from a worker thread.
    """
    import_model_modules()
    now = now or dt.datetime.now(dt.UTC)
    deleted: dict[str, int] = {}
    for spec in SWEPT:
        found = _expiry_column(spec)
        if found is None:
            continue  # a table that a newer or older schema does not have
        table, column = found
        cutoff = now - grace - spec.extra_retention
        total = 0
        while True:
            # Through the primary key in batches: portable (SQLite has no DELETE … LIMIT).
            key = list(table.primary_key.columns)
            batch = select(*key).where(column < cutoff).limit(BATCH_SIZE)
            with database.session() as session:
                if len(key) == 1:
                    result = session.execute(delete(table).where(key[0].in_(batch)))
                else:
                    result = session.execute(delete(table).where(column < cutoff))
            count = result.rowcount or 0  # type: ignore[attr-defined]
            total += count
            if count < BATCH_SIZE or len(key) != 1:
                break
        if total:
            deleted[spec.table] = total
    return deleted


async def run_sweeper(
    database: Database,
    *,
    interval_seconds: float,
    grace: dt.timedelta,
    on_swept: Callable[[dict[str, int]], None] | None = None,
) -> None:
    """Sweep every ``interval_seconds`` (with jitter, so nodes drift apart) until cancelled."""
    while True:
        await asyncio.sleep(interval_seconds * random.uniform(0.8, 1.2))  # noqa: S311
        try:
            deleted = await asyncio.to_thread(sweep_expired, database, grace=grace)
        except Exception:
            # The database may be away for a moment: try again next time.
            logger.exception("sweeping expired rows failed")
            continue
        if deleted:
            logger.info("swept expired rows: %s", deleted)
        if on_swept is not None:
            on_swept(deleted)

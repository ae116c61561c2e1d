"""The revocation cache in the database, so every node shares what any node learned."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from idp.db import Database, stored_utc
from idp.store.models import RevocationCacheEntry

_TABLE = RevocationCacheEntry.__table__
# Built once; the look-up runs on every certificate login.
_GET = select(_TABLE.c.status, _TABLE.c.until).where(_TABLE.c.key == bindparam("cache_key"))
_INSERT = insert(_TABLE)
_REPLACE = (
    update(_TABLE)
    .where(_TABLE.c.key == bindparam("cache_key"))
    .values(status=bindparam("new_status"), until=bindparam("new_until"))
)


# Entries this process remembers before it starts over (a few per card that logged in).
MAX_REMEMBERED = 10_000


class DatabaseRevocationCache:
    """Implements ``idp.siths.revocation.RevocationCache`` on the IdP's database.

    Only good answers are stored, each until its ``until``, and a newer answer only moves
    ``until`` later: so an answer this process has read or written stays what the database
    says until then, and is answered from memory without a query on every login."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._remembered: dict[str, tuple[str, dt.datetime]] = {}

    def get(self, key: str, now: dt.datetime) -> str | None:
        remembered = self._remembered.get(key)
        if remembered is not None and remembered[1] > now:
            return remembered[0]
        # A read on its own connection, no transaction to commit.
        with self._database.engine.connect() as connection:
            row = connection.execute(_GET, {"cache_key": key}).first()
        if row is None or stored_utc(row.until) <= now:
            return None
        self._remember(key, row.status, stored_utc(row.until))
        return row.status

    def _remember(self, key: str, status: str, until: dt.datetime) -> None:
        if len(self._remembered) >= MAX_REMEMBERED:
            self._remembered.clear()
        self._remembered[key] = (status, until)

    def put(self, key: str, status: str, until: dt.datetime) -> None:
        try:
            with self._database.engine.begin() as connection:
                replaced = connection.execute(
                    _REPLACE, {"cache_key": key, "new_status": status, "new_until": until}
                )
                if replaced.rowcount == 0:
                    connection.execute(_INSERT, {"key": key, "status": status, "until": until})
        except IntegrityError:
            return  # another node stored the same answer at the same moment
        self._remember(key, status, stored_utc(until))

"""The revocation cache in the database, so every node shares what any node learned."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.exc import IntegrityError

from idp.db import Database
from idp.store.models import RevocationCacheEntry


class DatabaseRevocationCache:
    """Implements ``idp.siths.revocation.RevocationCache`` on the IdP's database."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def get(self, key: str, now: dt.datetime) -> str | None:
        with self._database.session() as session:
            entry = session.get(RevocationCacheEntry, key)
            if entry is None:
                return None
            until = entry.until if entry.until.tzinfo else entry.until.replace(tzinfo=dt.UTC)
            return entry.status if until > now else None

    def put(self, key: str, status: str, until: dt.datetime) -> None:
        try:
            with self._database.session() as session:
                session.merge(RevocationCacheEntry(key=key, status=status, until=until))
        except IntegrityError:
            pass  # another node stored the same answer at the same moment

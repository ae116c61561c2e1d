"""The portal's database: engine, sessions, and the schema from the Alembic migrations in
``portal/migrations``.

Callers rely on :meth:`Database.session` committing on success and rolling back on error, and
on a new :class:`Database` having the newest schema (it migrates on construction).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from idp.db import create_database_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection) -> Config:
    """Alembic's configuration made in code (no alembic.ini); ``env.py`` migrates
    ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade_schema(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)


class Database:
    """An engine with its session factory; the schema is migrated on construction."""

    def __init__(self, database_url: str) -> None:
        self.engine = create_database_engine(database_url, pool_size=5, max_overflow=10)
        upgrade_schema(self.engine)
        # expire_on_commit=False: pages render orders after the transaction has ended.
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed when the block ends, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

"""The SQLAlchemy engine and session factory shared by the directory and the transient store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


class Base(DeclarativeBase):
    """Declarative base for every table the IdP owns."""


def create_database_engine(database_url: str) -> Engine:
    """Create an engine; for SQLite, make the file's folder and enable WAL and foreign keys."""
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(database_url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            # WAL lets readers continue while a login is being written.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(database_url, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    """Create all tables that do not exist yet."""
    # Import for their side effect of registering tables on Base.metadata.
    import idp.directory.models
    import idp.oidc.models
    import idp.store.models  # noqa: F401

    Base.metadata.create_all(engine)


class Database:
    """An engine plus a session factory; ``session()`` commits on success, rolls back on error."""

    def __init__(self, database_url: str) -> None:
        self.engine = create_database_engine(database_url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

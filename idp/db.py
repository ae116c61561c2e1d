"""The SQLAlchemy engine and session factory shared by the directory and the transient store,
and the schema: managed by the Alembic migrations in ``idp/migrations``.

Two back ends are supported: SQLite (the embedded default, a file under ``var/``) and
PostgreSQL through psycopg 3 (``postgresql+psycopg://…``; a plain ``postgresql://`` URL is
taken to mean psycopg 3 as well). Callers rely on:

- :class:`Database` ``.session()`` committing on success and rolling back on error;
- :func:`create_schema` bringing any database to the newest schema (safe to call from several
  processes at once: PostgreSQL serialises it with an advisory lock, SQLite with a file lock);
- :func:`schema_status` telling, without changing anything, whether a database is current.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import importlib
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from idp.blocking import WouldWait, note_write_committed, on_the_loop, waiting_refused

PACKAGE_DIR = Path(__file__).resolve().parent
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"
# Any 64-bit number, the same in every node: PostgreSQL's advisory lock for migrations.
MIGRATION_LOCK_KEY = 0x1DB5C4E3A


class Base(DeclarativeBase):
    """Declarative base for every table the IdP owns."""


# What the store's functions run their (Core) statements on: the caller's open transaction,
# an ORM Session from :meth:`Database.session` or a Connection; both have ``execute``.
Transaction = Session | Connection


def normalise_database_url(database_url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 here (psycopg2 is not installed)."""
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url.removeprefix(prefix)
    return database_url


def stored_utc(moment: dt.datetime) -> dt.datetime:
    """A time read from the database, timezone-aware: SQLite returns naive datetimes, and
    every time this service stores is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def is_sqlite(database_url: str) -> bool:
    return database_url.startswith("sqlite:")


def sqlite_file(database_url: str | URL) -> Path | None:
    """The file a SQLite URL names, or None for an in-memory database; a ``file:`` URI
    (``sqlite:///file:/path?mode=ro&uri=true``) names the file of its path."""
    url = make_url(database_url)
    database = url.database
    if url.query.get("uri") == "true" and database and database.startswith("file:"):
        if url.query.get("mode") == "memory":
            return None
        database = urllib.parse.unquote(urllib.parse.urlsplit(database).path)
    if not database or database == ":memory:":
        return None
    return Path(database)


# Request handlers run their database work in the server's thread pool (anyio's default: 40
# threads), one connection per thread at a time. A pool at least that large means no thread
# ever waits for a connection: under load the wait is for CPU, where it belongs, and a login
# does not fail with "QueuePool limit reached" (which a smaller pool did in the benchmarks).
DEFAULT_POOL_SIZE = 10
DEFAULT_MAX_OVERFLOW = 30
CONNECT_TIMEOUT_SECONDS = 5
# How long a SQLite connection waits for another's write lock. On the event loop's thread
# (idp.blocking) only a moment: a few of another worker's login transactions (0.1-0.3 ms each),
# which under load is the usual wait; a lock held longer sends the call to a worker thread.
SQLITE_LOCK_WAIT_MS = 30_000
SQLITE_LOCK_WAIT_ON_LOOP_MS = 3
# On the loop the write lock is asked for again this often. SQLite's own busy handler sleeps a
# whole millisecond before its first retry, several times as long as another worker's login
# transaction holds the lock, and the loop (every request of the process) stood still meanwhile.
SQLITE_LOCK_RETRY_ON_LOOP_SECONDS = 0.00005
# SQLite's own default: a commit that leaves the write-ahead log this many pages long copies it
# into the database file (a checkpoint, which syncs the disk). Never on the loop: there the node
# checkpoints in a worker thread instead (idp.ops.wal_checkpoints).
SQLITE_AUTOCHECKPOINT_PAGES = 1000
_WAITS = "idp_waits"  # a pooled SQLite connection's (busy_timeout, wal_autocheckpoint) now


def create_database_engine(
    database_url: str,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    max_overflow: int = DEFAULT_MAX_OVERFLOW,
) -> Engine:
    """Create an engine; for SQLite, make the file's folder and enable WAL and foreign keys.

    ``pool_size`` connections are kept open, up to ``max_overflow`` more are opened under
    load: together they bound one node's connections to a server database.
    """
    database_url = normalise_database_url(database_url)
    if is_sqlite(database_url):
        database = sqlite_file(database_url)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            database_url,
            connect_args={"timeout": SQLITE_LOCK_WAIT_MS / 1000},
            # Every connection is kept: an overflow connection would be opened (with the
            # pragmas below, journal_mode taking a lock) and closed again on every busy moment,
            # which the order benchmark showed as a sixth of the node's time. A SQLite
            # connection costs only a file handle.
            pool_size=pool_size + max_overflow,
            max_overflow=0,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            # WAL lets readers continue while a login is being written.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # In WAL mode NORMAL syncs at checkpoints, not at every commit: a killed process
            # loses nothing committed, a power cut may lose the last transactions (transient
            # login state, which the user repeats). FULL cost a disk flush per login step.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        _wait_for_locks_only_off_the_loop(engine)
        return engine
    return create_engine(
        database_url,
        # A pooled connection the server has dropped (a restart) is noticed at checkout and
        # replaced; a request whose connection breaks mid-transaction is run once more by
        # idp.web.failsafe. A database host that does not answer fails fast, not after TCP's
        # minutes.
        pool_pre_ping=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
        pool_size=pool_size,
        max_overflow=max_overflow,
    )


def _wait_for_locks_only_off_the_loop(engine: Engine) -> None:
    """A SQLite transaction of a call on the event loop's thread (:mod:`idp.blocking`) that
    meets another connection's write lock for longer than a moment raises :class:`WouldWait`
    instead of waiting on, and one that commits a write says so (the call can no longer start
    over). Its commit never checkpoints: that would wait for the disk."""

    @event.listens_for(engine, "begin")
    def _set_waits(connection: Connection) -> None:
        # Refused a wait, a call takes the write lock itself (below): SQLite must not wait.
        lock_wait = 0 if waiting_refused() else SQLITE_LOCK_WAIT_MS
        checkpoint_pages = 0 if on_the_loop() else SQLITE_AUTOCHECKPOINT_PAGES
        pooled = connection.connection
        now_lock_wait, now_pages = pooled.info.get(
            _WAITS, (SQLITE_LOCK_WAIT_MS, SQLITE_AUTOCHECKPOINT_PAGES)
        )
        driver = pooled.driver_connection
        if now_lock_wait != lock_wait:
            driver.execute(f"PRAGMA busy_timeout={lock_wait}")  # type: ignore[union-attr]
        if now_pages != checkpoint_pages:
            driver.execute(f"PRAGMA wal_autocheckpoint={checkpoint_pages}")  # type: ignore[union-attr]
        pooled.info[_WAITS] = (lock_wait, checkpoint_pages)

    @event.listens_for(engine, "before_cursor_execute")
    def _lock_before_the_first_write(  # type: ignore[no-untyped-def]
        connection: Connection, cursor, statement: str, _parameters, _context, _many
    ) -> None:
        # Where pysqlite would open the transaction (before a transaction's first write).
        driver = cursor.connection
        if waiting_refused() and not driver.in_transaction and _is_write(statement):
            _take_write_lock_on_the_loop(driver)

    @event.listens_for(engine, "handle_error")
    def _locked_means_would_wait(context: ExceptionContext) -> BaseException | None:
        busy = _is_busy(context.original_exception)
        return WouldWait("SQLite write lock held elsewhere") if busy and waiting_refused() else None

    @event.listens_for(engine, "commit")
    def _note_write(connection: Connection) -> None:
        # pysqlite opens a transaction only before a write: one open here is a write.
        if connection.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
            note_write_committed()


def _is_write(statement: str) -> bool:
    # pysqlite's own rule for opening a transaction implicitly.
    return statement.lstrip()[:7].upper().startswith(("INSERT", "UPDATE", "DELETE", "REPLACE"))


def _is_busy(error: BaseException) -> bool:
    """SQLite's "busy": another connection holds the lock (any extended code of it)."""
    return (
        isinstance(error, sqlite3.OperationalError)
        and error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
    )


def _take_write_lock_on_the_loop(driver: sqlite3.Connection) -> None:
    """Open the transaction with the write lock, asking again every
    :data:`SQLITE_LOCK_RETRY_ON_LOOP_SECONDS` while another connection holds it. SQLite's
    "busy" error once that has lasted :data:`SQLITE_LOCK_WAIT_ON_LOOP_MS` passes on, as an
    error from the statement, to ``handle_error``, which makes it :class:`WouldWait` (raised
    here, a BaseException, SQLAlchemy would take the connection for broken)."""
    deadline = time.monotonic() + SQLITE_LOCK_WAIT_ON_LOOP_MS / 1000
    while True:
        try:
            driver.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            if not _is_busy(error) or time.monotonic() >= deadline:
                raise
        time.sleep(SQLITE_LOCK_RETRY_ON_LOOP_SECONDS)


def model_module_names() -> list[str]:
    """The modules under ``idp`` that define tables: every ``models.py`` and ``models/``
    package. Found on disk, so a new one is picked up without being listed anywhere."""
    names: set[str] = set()
    for path in PACKAGE_DIR.rglob("models.py"):
        names.add(".".join(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts))
    for path in PACKAGE_DIR.rglob("models/__init__.py"):
        names.add(".".join(path.parent.relative_to(PACKAGE_DIR.parent).parts))
    return sorted(name for name in names if ".migrations" not in name)


def import_model_modules() -> None:
    """Import every model module so that all tables are on ``Base.metadata``."""
    for name in model_module_names():
        importlib.import_module(name)


def alembic_config(connection: Connection) -> Config:
    """Alembic's configuration, made in code (no alembic.ini): ``env.py`` migrates
    ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration's revision id."""
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    if head is None:
        raise RuntimeError("idp/migrations has no revisions")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at (``None``: never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def schema_status(engine: Engine) -> SchemaStatus:
    """Where the database's schema is against the newest migration; changes nothing."""
    with engine.connect() as connection:
        return SchemaStatus(current_revision(connection), head_revision())


@contextmanager
def _migration_lock(engine: Engine, connection: Connection) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        # Held until the transaction ends: a second node starting at the same moment waits
        # here, then finds the schema current.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        yield
        return
    database = sqlite_file(engine.url)
    if database is None:
        yield
        return
    with open(f"{database}.migrate-lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision``.

    A database made before migrations existed (tables from ``create_all``, no
    ``alembic_version``) is adopted: missing tables are created as before, and it is stamped
    with the newest revision, since ``create_all`` made it from the same models.
    """
    import_model_modules()
    with engine.begin() as connection, _migration_lock(engine, connection):
        config = alembic_config(connection)
        tables = set(inspect(connection).get_table_names())
        legacy = "alembic_version" not in tables and bool(tables & set(Base.metadata.tables))
        if legacy:
            Base.metadata.create_all(connection)
            command.stamp(config, "head")
            return
        command.upgrade(config, revision)


def create_schema(engine: Engine) -> None:
    """Bring the database to the newest schema (the name predates migrations)."""
    upgrade_schema(engine)


class SchemaNotCurrent(RuntimeError):
    """The database is not at the newest migration and this process may not migrate it."""


def prepare_schema(engine: Engine, *, migrate: bool | None = None) -> None:
    """At server start: migrate (``migrate`` true, or unset and SQLite), else insist that the
    schema is already the newest and raise :class:`SchemaNotCurrent` if it is not."""
    if migrate is None:
        migrate = engine.dialect.name == "sqlite"
    if migrate:
        upgrade_schema(engine)
        return
    status = schema_status(engine)
    if not status.up_to_date:
        raise SchemaNotCurrent(
            f"the database schema is at {status.current or 'nothing'}, this IdP needs "
            f"{status.head}: run `idp db upgrade` first"
        )


class Database:
    """An engine plus a session factory; ``session()`` commits on success, rolls back on error."""

    def __init__(
        self,
        database_url: str,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        max_overflow: int = DEFAULT_MAX_OVERFLOW,
    ) -> None:
        self.url = normalise_database_url(database_url)
        self.engine = create_database_engine(
            self.url, pool_size=pool_size, max_overflow=max_overflow
        )
        # Public so that session events can be attached (idp.ops.metrics counts audit rows).
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        # The connection kept checked out for the calls on the event loop (idp.blocking), which
        # run one at a time: their transactions skip the pool's checkout and checkin, about a
        # tenth of a millisecond each. None while one of them uses it, or after a failure.
        self._kept_for_the_loop: Connection | None = None

    @property
    def in_process(self) -> bool:
        """True for SQLite: a file this process reads and writes itself, no server between."""
        return is_sqlite(self.url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.session_factory() as session, session.begin():
            yield session

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A transaction on a pooled connection, for Core statements only: what the login's
        hot path uses (no ORM Session to set up and flush). Commits on success, rolls back
        on error."""
        if not on_the_loop():
            with self.engine.begin() as connection:
                yield connection
            return
        # A transaction opened inside this one finds no kept connection and takes another.
        connection, self._kept_for_the_loop = self._kept_for_the_loop, None
        if connection is None:
            connection = self.engine.connect()
        try:
            with connection.begin():
                yield connection
        except BaseException:
            connection.close()  # back to the pool, which resets it; the next call takes another
            raise
        if self._kept_for_the_loop is None:
            self._kept_for_the_loop = connection
        else:
            connection.close()

    def checkpoint(self) -> None:
        """Copy what SQLite's write-ahead log holds into the database file, as far as no reader
        still needs it (PASSIVE: it waits for no lock). Syncs the disk: call it off the loop.
        Does nothing for a server database."""
        if not self.in_process:
            return
        with self.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        kept, self._kept_for_the_loop = self._kept_for_the_loop, None
        with contextlib.suppress(Exception):
            if kept is not None:
                kept.close()
            self.engine.dispose()

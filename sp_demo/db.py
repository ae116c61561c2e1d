"""Mock Treserva's own user register: accounts, their HSA-IDs and their permissions.

Treserva authorises by its own register, not by anything the IdP says: the IdP proves *who*
logged in (the HSA-ID), and this database says what that person may do. An account predates
SITHS login and is keyed by its Windows account; ``hsa_id`` is filled in when the account is
moved over to SITHS login, so it may be empty. Each permission belongs to one login: the
Windows login it was set up for, or the SITHS login (by HSA-ID) it has been moved to; from the
cut-over only the SITHS login's permissions can be used. A person with tjänste-id at two
organisations (e.g. Göteborgs Stad and a private care provider) has one account per
organisation, as permissions belong to the assignment, not to the person.

All names and HSA-IDs in :func:`seed_demo_users` are invented.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    String,
    Text,
    create_engine,
    inspect,
    select,
    text,
    true,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    selectinload,
    sessionmaker,
)

# Which login a permission belongs to.
LOGIN_WINDOWS = "windows"
LOGIN_SITHS = "siths"


class Base(DeclarativeBase):
    pass


class User(Base):
    """A Treserva account."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    windows_account: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    # None until the account has been moved over to SITHS login.
    hsa_id: Mapped[str | None] = mapped_column(String(31), unique=True, default=None)
    # False once deactivated (SCIM): the account can no longer be used, but is kept.
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    permissions: Mapped[list[Permission]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="Permission.id"
    )

    def __repr__(self) -> str:
        return f"User({self.windows_account!r}, hsa_id={self.hsa_id!r})"


class Permission(Base):
    """One role at one unit, e.g. "handläggare" at "Hemtjänst Centrum"."""

    __tablename__ = "permissions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(100))
    unit: Mapped[str] = mapped_column(String(200))
    # LOGIN_WINDOWS until moved to the SITHS login (see sp_demo.users.move_permissions).
    login: Mapped[str] = mapped_column(String(10), default=LOGIN_SITHS)
    user: Mapped[User] = relationship(back_populates="permissions")


class AuditEvent(Base):
    """One change to the register: who made it (``actor``), what, and to which account."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    windows_account: Mapped[str] = mapped_column(String(100), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


def make_engine(database_url: str) -> Engine:
    """An engine for ``database_url``; creates the directory of a SQLite file if needed."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url)


def create_schema(engine: Engine) -> None:
    """Create the tables that do not exist yet, and add ``users.active`` and
    ``permissions.login`` to a database made before they existed (its accounts are active;
    its permissions count as moved where the account has an HSA-ID)."""
    Base.metadata.create_all(engine)
    if "active" not in {column["name"] for column in inspect(engine).get_columns("users")}:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE users ADD COLUMN active BOOLEAN DEFAULT TRUE"))
    columns = {column["name"] for column in inspect(engine).get_columns("permissions")}
    if "login" in columns:
        return
    with engine.begin() as connection:
        connection.execute(
            text(f"ALTER TABLE permissions ADD COLUMN login VARCHAR(10) DEFAULT '{LOGIN_SITHS}'")
        )
        without_hsa_id = select(User.id).where(User.hsa_id.is_(None))
        connection.execute(
            update(Permission)
            .where(Permission.user_id.in_(without_hsa_id))
            .values(login=LOGIN_WINDOWS)
        )


class Database:
    """An engine with its session factory; the schema is created on construction."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        create_schema(self.engine)
        # expire_on_commit=False: pages render users after the transaction has ended.
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed when the block ends, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def find_user_by_windows_account(session: Session, windows_account: str) -> User | None:
    """The account with this Windows account name (exact match), permissions loaded."""
    statement = (
        select(User)
        .where(User.windows_account == windows_account)
        .options(selectinload(User.permissions))
    )
    return session.scalars(statement).one_or_none()


def find_user_by_hsa_id(session: Session, hsa_id: str) -> User | None:
    """The account registered for ``hsa_id`` (exact match), with its permissions loaded."""
    statement = select(User).where(User.hsa_id == hsa_id).options(selectinload(User.permissions))
    return session.scalars(statement).one_or_none()


def list_users(session: Session) -> list[User]:
    """All accounts with their permissions, ordered by display name then Windows account."""
    statement = (
        select(User)
        .options(selectinload(User.permissions))
        .order_by(User.display_name, User.windows_account)
    )
    return list(session.scalars(statement))


# (windows account, display name, HSA-ID or None, [(role, unit), ...]). Permissions of an account
# with an HSA-ID have been moved to the SITHS login; the others are still on the Windows login.
DEMO_USERS: tuple[tuple[str, str, str | None, tuple[tuple[str, str], ...]], ...] = (
    (
        r"GBGSTAD\anna.andersson",
        "Anna Andersson",
        "SE2120001355-E0001",
        (("handläggare", "Hemtjänst Centrum"), ("handläggare", "Hemtjänst Majorna")),
    ),
    (
        r"GBGSTAD\bertil.berg",
        "Bertil Berg",
        "SE2120001355-E0002",
        (("undersköterska", "Äldreboende Guldheden"),),
    ),
    (
        r"GBGSTAD\erik.ek",
        "Erik Ek",
        "SE2120001355-E0005",
        (("chef", "Hemtjänst Centrum"),),
    ),
    # Erik Ek's assignment at an (invented) private care provider: its own tjänste-id, so its
    # own account.
    (
        r"OMSORGVAST\erik.ek",
        "Erik Ek",
        "SE5567000010-P0001",
        (("utförare", "Omsorgsbolaget Väst"),),
    ),
    # Still logs in with Windows only: its HSA-ID has not been registered yet.
    (
        r"GBGSTAD\doris.dahl",
        "Doris Dahl",
        None,
        (("handläggare", "Biståndsenheten Lundby"),),
    ),
)


def seed_demo_users(session: Session) -> list[User]:
    """Add the demo accounts that are missing (by Windows account); return the added ones.

    Idempotent: running it again adds nothing and changes no existing account.
    """
    existing = set(session.scalars(select(User.windows_account)))
    added: list[User] = []
    for windows_account, display_name, hsa_id, permissions in DEMO_USERS:
        if windows_account in existing:
            continue
        user = User(
            windows_account=windows_account,
            display_name=display_name,
            hsa_id=hsa_id,
            permissions=[
                Permission(role=role, unit=unit, login=LOGIN_SITHS if hsa_id else LOGIN_WINDOWS)
                for role, unit in permissions
            ],
        )
        session.add(user)
        added.append(user)
    session.flush()
    return added

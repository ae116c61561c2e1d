"""SAML session participants: which SPs got an assertion in an SSO session, and as whom.

Recorded in the transaction that finished the login, with the subject (NameID and
SessionIndex) decided for its Response before that is built, and forgotten again should the
Response then not be sent (:mod:`idp.saml.sso`): what is recorded is what the SP received.
Read when the session is logged out, to send each SP a LogoutRequest naming that subject. Rows
live as long as the SSO session.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from idp.authn import Authentication
from idp.login.sso import sso_session_key
from idp.saml.response import Subject
from idp.store.models import SamlSessionParticipant

# What a later login to the same SP in the same session replaces (a running logout's columns
# are kept). One statement either way: no read first, no ORM unit of work on the login's path.
_SUBJECT_COLUMNS = (
    "hsa_id",
    "name_id",
    "name_id_format",
    "name_qualifier",
    "sp_name_qualifier",
    "session_index",
    "created_at",
    "expires_at",
)


def _upsert(dialect_insert: Callable[[Table], Any]) -> Any:
    statement = dialect_insert(_TABLE)
    return statement.on_conflict_do_update(
        index_elements=["session_key", "sp_entity_id"],
        set_={name: statement.excluded[name] for name in _SUBJECT_COLUMNS},
    )


_TABLE: Table = SamlSessionParticipant.__table__  # type: ignore[assignment]
_UPSERTS = {"sqlite": _upsert(sqlite_insert), "postgresql": _upsert(postgresql_insert)}
_FORGET = delete(_TABLE).where(
    _TABLE.c.session_key == bindparam("session_key"),
    _TABLE.c.sp_entity_id == bindparam("sp_entity_id"),
    _TABLE.c.session_index == bindparam("session_index"),
    _TABLE.c.logout_run == "",
)


def record_participant(
    connection: Connection,
    sp_entity_id: str,
    authentication: Authentication,
    subject: Subject,
    ttl_seconds: int,
) -> None:
    """Remember, in ``connection``'s transaction, that ``sp_entity_id`` takes part in the SSO
    session of ``authentication`` and knows the user as ``subject`` (what its Response names).

    Never raises for a concurrent recording (the last one stands); a database that cannot
    take the row fails the transaction like any other database error.
    """
    now = dt.datetime.now(dt.UTC)
    # Expired rows are left to the sweeper (idp.ops.sweeper) and ignored by the lookups
    # below: deleting them here cost every login a second write.
    connection.execute(
        _UPSERTS[connection.dialect.name],
        {
            "session_key": sso_session_key(authentication),
            "sp_entity_id": sp_entity_id,
            "hsa_id": authentication.hsa_id,
            "name_id": subject.name_id,
            "name_id_format": subject.name_id_format,
            "name_qualifier": subject.name_qualifier,
            "sp_name_qualifier": subject.sp_name_qualifier,
            "session_index": subject.session_index,
            "created_at": now,
            "expires_at": now + dt.timedelta(seconds=ttl_seconds),
        },
    )


def forget_participant(
    connection: Connection, sp_entity_id: str, authentication: Authentication, subject: Subject
) -> None:
    """Undo :func:`record_participant` for a Response that was then not sent: the row goes if
    it still names ``subject`` (its SessionIndex is that Response's alone) and no logout has
    started on it."""
    connection.execute(
        _FORGET,
        {
            "session_key": sso_session_key(authentication),
            "sp_entity_id": sp_entity_id,
            "session_index": subject.session_index,
        },
    )


def session_keys_of_subject(
    session: Session, sp_entity_id: str, name_id: str, session_indexes: tuple[str, ...]
) -> list[tuple[str, str]]:
    """(session key, HSA-ID) of the sessions in which ``sp_entity_id`` knows the user as
    ``name_id`` (and, if any are given, by one of ``session_indexes``)."""
    statement = select(
        SamlSessionParticipant.session_key,
        SamlSessionParticipant.hsa_id,
        SamlSessionParticipant.session_index,
    ).where(
        SamlSessionParticipant.sp_entity_id == sp_entity_id,
        SamlSessionParticipant.name_id == name_id,
        SamlSessionParticipant.expires_at >= dt.datetime.now(dt.UTC),
    )
    return [
        (key, hsa_id)
        for key, hsa_id, index in session.execute(statement)
        if not session_indexes or index in session_indexes
    ]


def participants_of(session: Session, key: str) -> list[SamlSessionParticipant]:
    """The SPs of the session named ``key`` that no logout has started on yet."""
    statement = select(SamlSessionParticipant).where(
        SamlSessionParticipant.session_key == key,
        SamlSessionParticipant.logout_run == "",
        SamlSessionParticipant.expires_at >= dt.datetime.now(dt.UTC),
    )
    return list(session.scalars(statement.order_by(SamlSessionParticipant.id)))

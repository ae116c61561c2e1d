"""Audit events: one row in the database and one structured log line per decision.

Never pass keys, assertions or whole certificates here: a reason code and short detail only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import insert
from sqlalchemy.orm import Session

from idp.db import Database, Transaction
from idp.errors import Refusal
from idp.store.models import AuditEvent

logger = logging.getLogger("idp.audit")
# The LogRecord attribute that carries an audit line's fields.
AUDIT_FIELDS = "audit_fields"

# (event, outcome, detail) → an audit event, for parts that run outside a request and its
# session (the remote metadata refresher, metadata loading): see database_audit_hook.
AuditHook = Callable[[str, str, str], None]
# Where a transaction keeps (event, outcome, method, reason) of the events it recorded, in its
# connection's ``info``, so that the metrics count them once it commits (idp.ops.metrics).
RECORDED_IN_TRANSACTION = "idp.audit.recorded"
_INSERT = insert(AuditEvent.__table__)  # built once: a login records two or three events


class AuditSink(Protocol):
    """Where a use case records its audit events: into the caller's transaction, with the
    fields of :func:`record_audit_event` (which is one)."""

    def __call__(
        self,
        session: Transaction,
        event: str,
        *,
        outcome: str,
        reason: str = "",
        hsa_id: str = "",
        client_id: str = "",
        method: str = "",
        detail: str = "",
    ) -> None: ...


def database_audit_hook(database: Database) -> AuditHook:
    """A hook recording ``(event, outcome, detail)`` as an audit event (one transaction each).

    Blocking: call it from a worker thread (the metadata refresher calls it from its own).
    """

    def record(event: str, outcome: str, detail: str) -> None:
        with database.transaction() as connection:
            record_audit_event(connection, event, outcome=outcome, detail=detail[:2000])

    return record


def record_audit_event(
    session: Transaction,
    event: str,
    *,
    outcome: str,
    reason: str = "",
    hsa_id: str = "",
    client_id: str = "",
    method: str = "",
    detail: str = "",
) -> None:
    """Insert the event in ``session``'s transaction (committed with it) and log it."""
    session.execute(
        _INSERT,
        {
            "at": datetime.now(UTC),
            "event": event,
            "outcome": outcome,
            "reason": reason,
            "hsa_id": hsa_id[:64],
            "client_id": client_id[:1024],
            "method": method,
            "detail": detail[:2000],
        },
    )
    connection = session.connection() if isinstance(session, Session) else session
    connection.info.setdefault(RECORDED_IN_TRANSACTION, []).append((event, outcome, method, reason))
    # The fields travel as a dict: the JSON formatter (idp.server.logging_setup) puts them into
    # the line as they are, and a plain handler still shows a readable message.
    logger.info(
        "%s %s %s",
        event,
        outcome,
        reason,
        extra={
            AUDIT_FIELDS: {
                "audit": event,
                "outcome": outcome,
                "reason": reason,
                "hsa_id": hsa_id,
                "client_id": client_id,
                "method": method,
                "detail": detail[:500],
            }
        },
    )


async def record_audit_event_in_thread(database: Database, event: str, **fields: str) -> None:
    """The same as :func:`record_audit_event` in its own transaction, off the event loop."""

    def write() -> None:
        with database.transaction() as connection:
            record_audit_event(connection, event, **fields)  # type: ignore[arg-type]

    await asyncio.to_thread(write)


def record_refusal(
    audit: AuditSink,
    session: Transaction,
    event: str,
    refusal: Refusal,
    *,
    outcome: str = "rejected",
    hsa_id: str = "",
    client_id: str = "",
    method: str = "",
    where: str = "",
) -> None:
    """The one way a :class:`Refusal` becomes an audit event: its code as the reason and its
    detail as the detail (after ``where``, e.g. the path, if given), in ``event`` with
    ``outcome`` (into the caller's transaction)."""
    audit(
        session,
        event,
        outcome=outcome,
        reason=refusal.reason,
        hsa_id=hsa_id,
        client_id=client_id,
        method=method,
        detail=f"{where}: {refusal.detail}" if where else refusal.detail,
    )


async def record_refusal_in_thread(
    database: Database, event: str, refusal: Refusal, **fields: str
) -> None:
    """The same as :func:`record_refusal` in its own transaction, off the event loop."""

    def write() -> None:
        with database.transaction() as connection:
            record_refusal(record_audit_event, connection, event, refusal, **fields)

    await asyncio.to_thread(write)

"""The audit trail as seen by the metadata refresher: a plain callback over the database."""

from __future__ import annotations

from idp.audit import record_audit_event
from idp.db import Database
from idp.federation.remote import AuditHook


def database_audit_hook(database: Database) -> AuditHook:
    """A hook recording ``(event, outcome, detail)`` as an audit event (one transaction each).

    Blocking: the refresher calls it from its own thread.
    """

    def record(event: str, outcome: str, detail: str) -> None:
        with database.session() as session:
            record_audit_event(session, event, outcome=outcome, detail=detail[:2000])

    return record

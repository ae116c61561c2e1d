"""The audit trail of changes to Treserva's user register: who changed what, and when.

Every function takes the caller's session, so an event is committed with (and only with) the
change it describes.
"""

from __future__ import annotations

import datetime as dt
import getpass

from sqlalchemy import select
from sqlalchemy.orm import Session

from sp_demo.db import AuditEvent


def record(
    session: Session, actor: str, action: str, *, windows_account: str = "", detail: str = ""
) -> None:
    """Add one event. ``actor`` names a person (HSA-ID and name) or the command line user."""
    session.add(
        AuditEvent(
            at=dt.datetime.now(dt.UTC),
            actor=actor[:200],
            action=action,
            windows_account=windows_account[:100],
            detail=detail,
        )
    )


def recent_events(session: Session, limit: int = 200) -> list[AuditEvent]:
    """The newest ``limit`` events, newest first."""
    statement = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    return list(session.scalars(statement))


def web_actor(hsa_id: str, name: str) -> str:
    """How an administrator logged in via the IdP is named in the trail."""
    return f"{hsa_id} ({name})" if name else hsa_id


def cli_actor() -> str:
    """How the command line is named in the trail: the operating-system user running it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"

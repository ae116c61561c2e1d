"""The audit trail: every state change of an order, with who, what and when.

Every function takes the caller's session, so an event commits with (and only with) the change
it describes. Each event is also logged as one structured line.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.models import AuditEvent

logger = logging.getLogger("portal.audit")


def record(
    session: Session, actor: str, action: str, *, order_id: int | None = None, detail: str = ""
) -> None:
    session.add(
        AuditEvent(
            at=dt.datetime.now(dt.UTC),
            actor=actor[:200],
            action=action,
            order_id=order_id,
            detail=detail,
        )
    )
    logger.info(
        json.dumps(
            {"event": action, "actor": actor, "order": order_id, "detail": detail},
            ensure_ascii=False,
        )
    )


def events_for(session: Session, order_id: int) -> list[AuditEvent]:
    statement = select(AuditEvent).where(AuditEvent.order_id == order_id).order_by(AuditEvent.id)
    return list(session.scalars(statement))

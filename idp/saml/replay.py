"""Refusing a replayed SAML request: each (issuer, ID) is accepted once."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp.errors import Refusal
from idp.saml.reasons import SamlReason
from idp.store.models import SeenMessage

# An ID is remembered for longer than a request's IssueInstant is accepted.
REPLAY_WINDOW = dt.timedelta(minutes=15)


def refuse_replay(session: Session, issuer: str, message_id: str, refusal: type[Refusal]) -> None:
    """Remember ``message_id`` of ``issuer`` in the caller's transaction; raise ``refusal``
    with ``replayed_request`` if it was seen before (the database's unique key decides, so
    two nodes receiving the same request at once cannot both accept it)."""
    session.add(
        SeenMessage(
            issuer=issuer,
            message_id=message_id[:256],
            expires_at=dt.datetime.now(dt.UTC) + REPLAY_WINDOW,
        )
    )
    try:
        session.flush()
    except IntegrityError as exc:
        raise refusal(SamlReason.REPLAYED_REQUEST, message_id[:80]) from exc

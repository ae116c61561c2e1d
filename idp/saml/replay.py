"""Refusing a replayed SAML request: each (issuer, ID) is accepted once."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from idp.db import Transaction
from idp.errors import Refusal
from idp.saml.reasons import SamlReason
from idp.store.models import SeenMessage

# An ID is remembered for longer than a request's IssueInstant is accepted.
REPLAY_WINDOW = dt.timedelta(minutes=15)
MAX_MESSAGE_ID = 256

_INSERT = insert(SeenMessage)
_STARTED_LOGIN = select(SeenMessage.pending_login, SeenMessage.delivery).where(
    SeenMessage.issuer == bindparam("issuer"), SeenMessage.message_id == bindparam("message_id")
)


def refuse_replay(
    session: Transaction,
    issuer: str,
    message_id: str,
    refusal: type[Refusal],
    *,
    started_login: str | None = None,
    delivery: str | None = None,
) -> None:
    """Remember ``message_id`` of ``issuer`` in the caller's transaction, with the pending
    login it started (``started_login``, if any) and the request id it arrived under
    (``delivery``, if known); raise ``refusal`` with ``replayed_request``
    if it was seen before (the database's unique key decides, so two nodes receiving the same
    request at once cannot both accept it). After a refusal the transaction is unusable."""
    try:
        session.execute(
            _INSERT,
            {
                "issuer": issuer,
                "message_id": message_id[:MAX_MESSAGE_ID],
                "expires_at": dt.datetime.now(dt.UTC) + REPLAY_WINDOW,
                "pending_login": started_login,
                "delivery": delivery,
            },
        )
    except IntegrityError as exc:
        raise refusal(SamlReason.REPLAYED_REQUEST, message_id[:80]) from exc


def login_started_by(
    session: Transaction, issuer: str, message_id: str
) -> tuple[str, str | None] | None:
    """The reference of the pending login that ``message_id`` of ``issuer`` started when it
    was accepted, with the request id it arrived under (None: not seen, or it started none)."""
    row = session.execute(
        _STARTED_LOGIN, {"issuer": issuer, "message_id": message_id[:MAX_MESSAGE_ID]}
    ).first()
    return None if row is None or row.pending_login is None else (row.pending_login, row.delivery)

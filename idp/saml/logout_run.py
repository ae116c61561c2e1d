"""One Single Logout in progress: the SPs of the ended session, logged out one after another.

The browser carries every message (front channel), so the SPs are visited in turn: each gets a
LogoutRequest and answers with a LogoutResponse to the IdP, which then sends the next one. The
state lives in the session participants' rows (:class:`SamlSessionParticipant`), so any IdP
node can take the next step. A run is named by a random ``run_id`` that travels as RelayState;
an SP's answer is matched by its Issuer and InResponseTo, never by the RelayState alone.

Every function works in the caller's database session (transaction).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from idp.login.pending import new_token
from idp.saml.logout import SubjectOut
from idp.store.models import SamlSessionParticipant

INITIATOR = "initiator"
QUEUED = "queued"
SENT = "sent"
DONE = "done"
FAILED = "failed"
UNSUPPORTED = "unsupported"
# How long a run may wait for the SPs' answers before its rows are cleaned up.
RUN_TTL = dt.timedelta(minutes=30)


@dataclass(frozen=True)
class Initiator:
    """The SP whose LogoutRequest started the run, answered when the run is over."""

    sp_entity_id: str
    request_id: str
    binding: str
    relay_state: str


@dataclass(frozen=True)
class Step:
    """The next SP to send a LogoutRequest to."""

    participant_id: int
    subject: SubjectOut


@dataclass(frozen=True)
class Outcome:
    """How a finished run went: the SPs that confirmed, and those that did not or could not."""

    initiator: Initiator | None
    confirmed: tuple[str, ...]
    unconfirmed: tuple[str, ...]

    @property
    def partial(self) -> bool:
        return bool(self.unconfirmed)


def begin_run(session: Session, session_keys: set[str], initiator: Initiator | None) -> str:
    """Start a run over the participants of the sessions named by ``session_keys`` that are in
    no run yet; the initiator's own rows are not sent a request. Return the run ID."""
    run_id = new_token()
    now = dt.datetime.now(dt.UTC)
    rows = []
    if session_keys:
        rows = list(
            session.scalars(
                select(SamlSessionParticipant)
                .where(
                    SamlSessionParticipant.session_key.in_(session_keys),
                    SamlSessionParticipant.logout_run == "",
                )
                .order_by(SamlSessionParticipant.id)
            )
        )
    for row in rows:
        row.logout_run = run_id
        row.expires_at = now + RUN_TTL
        is_initiator = initiator is not None and row.sp_entity_id == initiator.sp_entity_id
        row.logout_state = DONE if is_initiator else QUEUED
    if initiator is not None:
        # The initiator's answer is kept in a row of its own, whether or not the session
        # had recorded it (an SP can ask to log out a session the IdP no longer has). Its key
        # is the run's, so two runs started by one SP never collide.
        session.add(
            SamlSessionParticipant(
                session_key=f"run:{run_id}"[:64],
                sp_entity_id=initiator.sp_entity_id,
                created_at=now,
                expires_at=now + RUN_TTL,
                logout_run=run_id,
                logout_state=INITIATOR,
                logout_request_id=initiator.request_id[:256],
                logout_binding=initiator.binding,
                logout_relay_state=initiator.relay_state,
            )
        )
    session.flush()
    return run_id


def next_step(session: Session, run_id: str) -> Step | None:
    """The next queued SP of the run (marked as being sent a request), or None if none is left."""
    row = session.scalars(
        select(SamlSessionParticipant)
        .where(
            SamlSessionParticipant.logout_run == run_id,
            SamlSessionParticipant.logout_state == QUEUED,
        )
        .order_by(SamlSessionParticipant.id)
        .limit(1)
    ).one_or_none()
    if row is None:
        return None
    row.logout_state = SENT
    return Step(
        row.id,
        SubjectOut(
            sp_entity_id=row.sp_entity_id,
            name_id=row.name_id,
            name_id_format=row.name_id_format,
            name_qualifier=row.name_qualifier,
            sp_name_qualifier=row.sp_name_qualifier,
            session_index=row.session_index,
        ),
    )


def mark_sent(session: Session, participant_id: int, request_id: str) -> None:
    """Remember the ID of the LogoutRequest sent to the participant (its answer must match)."""
    row = session.get(SamlSessionParticipant, participant_id)
    if row is not None:
        row.logout_request_id = request_id[:256]


def mark_unsupported(session: Session, participant_id: int) -> None:
    """The participant has no SLO endpoint: it cannot be logged out from here."""
    row = session.get(SamlSessionParticipant, participant_id)
    if row is not None:
        row.logout_state = UNSUPPORTED


def record_answer(
    session: Session, sp_entity_id: str, in_response_to: str, success: bool
) -> str | None:
    """Record an SP's LogoutResponse; return its run ID, or None if it answers no request of
    ours that is still waiting (unsolicited, or answered already)."""
    row = session.scalars(
        select(SamlSessionParticipant).where(
            SamlSessionParticipant.sp_entity_id == sp_entity_id,
            SamlSessionParticipant.logout_request_id == in_response_to,
            SamlSessionParticipant.logout_state == SENT,
        )
    ).one_or_none()
    if row is None:
        return None
    row.logout_state = DONE if success else FAILED
    return row.logout_run


def finish_run(session: Session, run_id: str) -> Outcome:
    """The run's outcome; its rows are deleted (the session they belonged to is over)."""
    rows = list(
        session.scalars(
            select(SamlSessionParticipant)
            .where(SamlSessionParticipant.logout_run == run_id)
            .order_by(SamlSessionParticipant.id)
        )
    )
    initiator = None
    confirmed: list[str] = []
    unconfirmed: list[str] = []
    for row in rows:
        if row.logout_state == INITIATOR:
            initiator = Initiator(
                row.sp_entity_id, row.logout_request_id, row.logout_binding, row.logout_relay_state
            )
        elif row.logout_state == DONE:
            confirmed.append(row.sp_entity_id)
        else:
            unconfirmed.append(row.sp_entity_id)
    session.execute(
        delete(SamlSessionParticipant).where(SamlSessionParticipant.logout_run == run_id)
    )
    if initiator is not None:
        confirmed = [sp for sp in confirmed if sp != initiator.sp_entity_id]
    return Outcome(initiator, tuple(dict.fromkeys(confirmed)), tuple(dict.fromkeys(unconfirmed)))

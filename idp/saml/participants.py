"""SAML session participants: which SPs got an assertion in an SSO session, and as whom.

Recorded after each Response is built (the NameID and SessionIndex the builder put into it, so
what is recorded is exactly what the SP received) and read when the session is logged out,
to send each SP a LogoutRequest naming that subject. Rows live as long as the SSO session.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp.authn import Authentication
from idp.db import Database
from idp.login.sso import sso_session_key
from idp.saml.response import Subject
from idp.store.models import SamlSessionParticipant

logger = logging.getLogger("idp.saml")


def record_participant(
    database: Database,
    sp_entity_id: str,
    authentication: Authentication,
    subject: Subject,
    ttl_seconds: int,
) -> None:
    """Remember that ``sp_entity_id`` took part in the SSO session of ``authentication``, and
    knows the user as ``subject`` (what the Response it was sent named).

    Never raises: a login must not fail because it could not be recorded (the SP then simply
    gets no LogoutRequest, as an SP without an SLO endpoint).
    """
    key = sso_session_key(authentication)
    now = dt.datetime.now(dt.UTC)
    try:
        # Expired rows are left to the sweeper (idp.ops.sweeper) and ignored by the lookups
        # below: deleting them here cost every login a second write.
        with database.session() as session:
            row = session.scalars(
                select(SamlSessionParticipant).where(
                    SamlSessionParticipant.session_key == key,
                    SamlSessionParticipant.sp_entity_id == sp_entity_id,
                )
            ).one_or_none()
            if row is None:
                row = SamlSessionParticipant(session_key=key, sp_entity_id=sp_entity_id)
                session.add(row)
            row.hsa_id = authentication.hsa_id
            row.name_id = subject.name_id
            row.name_id_format = subject.name_id_format
            row.name_qualifier = subject.name_qualifier
            row.sp_name_qualifier = subject.sp_name_qualifier
            row.session_index = subject.session_index
            row.created_at = now
            row.expires_at = now + dt.timedelta(seconds=ttl_seconds)
    except IntegrityError:
        # Two logins to the same SP in the same session at once: the other one was recorded.
        logger.info("participant %s recorded concurrently", sp_entity_id)


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

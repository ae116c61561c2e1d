"""SAML session participants: which SPs got an assertion in an SSO session, and as whom.

Recorded after each Response is built (the NameID and SessionIndex are read back from it, so
what is recorded is exactly what the SP received) and read when the session is logged out,
to send each SP a LogoutRequest naming that subject. Rows live as long as the SSO session.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from dataclasses import dataclass

from defusedxml import ElementTree
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp.authn import Authentication
from idp.db import Database
from idp.login.sso import sso_session_key
from idp.store.models import SamlSessionParticipant

logger = logging.getLogger("idp.saml")
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"


@dataclass(frozen=True)
class Subject:
    """How an SP knows the user: the NameID it received and the assertion's SessionIndex."""

    name_id: str
    name_id_format: str
    name_qualifier: str
    sp_name_qualifier: str
    session_index: str


def subject_of_response(saml_response_b64: str) -> Subject | None:
    """The NameID and SessionIndex of the (plain) assertion in a Response this IdP built; None
    if there is none to read (e.g. an EncryptedAssertion)."""
    root = ElementTree.fromstring(base64.b64decode(saml_response_b64), forbid_dtd=True)
    assertion = root.find(f"{SAML}Assertion")
    if assertion is None:
        return None
    name_id = assertion.find(f"{SAML}Subject/{SAML}NameID")
    statement = assertion.find(f"{SAML}AuthnStatement")
    if name_id is None or not name_id.text:
        return None
    return Subject(
        name_id=name_id.text.strip(),
        name_id_format=name_id.get("Format", ""),
        name_qualifier=name_id.get("NameQualifier", ""),
        sp_name_qualifier=name_id.get("SPNameQualifier", ""),
        session_index=statement.get("SessionIndex", "") if statement is not None else "",
    )


def record_participant(
    database: Database,
    sp_entity_id: str,
    authentication: Authentication,
    saml_response_b64: str,
    ttl_seconds: int,
) -> None:
    """Remember that ``sp_entity_id`` took part in the SSO session of ``authentication``.

    Never raises: a login must not fail because it could not be recorded (the SP then simply
    gets no LogoutRequest, as an SP without an SLO endpoint).
    """
    try:
        subject = subject_of_response(saml_response_b64)
    except Exception:
        logger.exception("could not read back the Response for %s", sp_entity_id)
        return
    if subject is None:
        logger.info("no readable subject for %s: it will not get a LogoutRequest", sp_entity_id)
        return
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

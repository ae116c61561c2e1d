"""Recording an SSO session's SAML participants: one statement per Response, the last subject
stands, and a running logout's bookkeeping is never overwritten by a login."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from idp.authn import Authentication
from idp.db import Database, create_schema
from idp.login.sso import sso_session_key
from idp.saml.participants import participants_of, record_participant
from idp.saml.response import Subject
from idp.store.models import SamlSessionParticipant
from tests.test_login_statements import statements_of

pytestmark = pytest.mark.unit
SP = "https://sp.example.test/metadata"
ANNA = Authentication(
    hsa_id="SE2120001355-E0001",
    given_name="Anna",
    surname="Andersson",
    title="",
    organisation="Göteborgs Stad",
    mail="",
    method="siths-this-device",
    certificate_fingerprint="ab" * 32,
    authn_instant=1_800_000_000,
    login_id="login-1",
)


def subject(name_id: str, session_index: str) -> Subject:
    return Subject(
        name_id, "urn:oasis:names:tc:SAML:2.0:nameid-format:transient", "", SP, session_index
    )


def test_a_participant_is_one_statement_and_the_last_subject_stands(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'idp.sqlite3'}")
    create_schema(database.engine)
    sent = statements_of(database)
    record_participant(database, SP, ANNA, subject("first", "s1"), 600)
    assert sent.count("INSERT") == 1 and "SELECT" not in sent, sent
    key = sso_session_key(ANNA)
    with database.transaction() as connection:
        connection.execute(
            update(SamlSessionParticipant).values(logout_run="run-1", logout_state="queued")
        )
    record_participant(database, SP, ANNA, subject("second", "s2"), 600)
    with database.session() as session:
        rows = list(session.scalars(select(SamlSessionParticipant)))
        assert len(rows) == 1
        row = rows[0]
        assert (row.session_key, row.name_id, row.session_index) == (key, "second", "s2")
        assert (row.logout_run, row.logout_state) == ("run-1", "queued")
        row.logout_run = ""
    with database.session() as session:
        assert [p.name_id for p in participants_of(session, key)] == ["second"]

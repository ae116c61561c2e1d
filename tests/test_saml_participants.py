"""Recording an SSO session's SAML participants: one statement per Response in the caller's
transaction, the last subject stands, a running logout's bookkeeping is never overwritten by a
login, and forgetting a Response that was not sent takes only its own row."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from idp.db import Database, create_schema
from idp.login.sso import sso_session_key
from idp.saml.participants import forget_participant, participants_of, record_participant
from idp.saml.response import Subject
from idp.store.models import SamlSessionParticipant
from tests.test_login_statements import ANNA, statements_of

pytestmark = pytest.mark.unit
SP = "https://sp.example.test/metadata"


def subject(name_id: str, session_index: str) -> Subject:
    return Subject(
        name_id, "urn:oasis:names:tc:SAML:2.0:nameid-format:transient", "", SP, session_index
    )


def new_database(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'idp.sqlite3'}")
    create_schema(database.engine)
    return database


def record(database: Database, named: Subject, sp: str = SP) -> None:
    with database.transaction() as connection:
        record_participant(connection, sp, ANNA, named, 600)


def name_ids(database: Database) -> list[str]:
    with database.session() as session:
        return [row.name_id for row in session.scalars(select(SamlSessionParticipant))]


def test_a_participant_is_one_statement_and_the_last_subject_stands(tmp_path: Path) -> None:
    database = new_database(tmp_path)
    sent = statements_of(database)
    record(database, subject("first", "s1"))
    assert sent.count("INSERT") == 1 and "SELECT" not in sent, sent
    key = sso_session_key(ANNA)
    with database.transaction() as connection:
        connection.execute(
            update(SamlSessionParticipant).values(logout_run="run-1", logout_state="queued")
        )
    record(database, subject("second", "s2"))
    with database.session() as session:
        rows = list(session.scalars(select(SamlSessionParticipant)))
        assert len(rows) == 1
        row = rows[0]
        assert (row.session_key, row.name_id, row.session_index) == (key, "second", "s2")
        assert (row.logout_run, row.logout_state) == ("run-1", "queued")
        row.logout_run = ""
    with database.session() as session:
        assert [p.name_id for p in participants_of(session, key)] == ["second"]


def test_a_participant_is_recorded_in_the_callers_transaction(tmp_path: Path) -> None:
    database = new_database(tmp_path)
    with pytest.raises(RuntimeError), database.transaction() as connection:
        record_participant(connection, SP, ANNA, subject("first", "s1"), 600)
        raise RuntimeError("the login's transaction fails after the participant")
    assert name_ids(database) == []


def test_forgetting_a_response_not_sent_takes_only_the_row_naming_it(tmp_path: Path) -> None:
    database = new_database(tmp_path)
    other_sp = "https://other-sp.example.test/metadata"
    record(database, subject("kept", "s1"), other_sp)
    record(database, subject("unsent", "s2"))
    with database.transaction() as connection:
        # Another Response's SessionIndex, or another SP's: nothing goes.
        forget_participant(connection, SP, ANNA, subject("unsent", "s1"))
        forget_participant(connection, other_sp, ANNA, subject("unsent", "s2"))
    assert sorted(name_ids(database)) == ["kept", "unsent"]
    with database.transaction() as connection:
        forget_participant(connection, SP, ANNA, subject("unsent", "s2"))
    assert name_ids(database) == ["kept"]


def test_forgetting_leaves_a_participant_a_logout_has_started_on(tmp_path: Path) -> None:
    database = new_database(tmp_path)
    record(database, subject("first", "s1"))
    with database.transaction() as connection:
        connection.execute(update(SamlSessionParticipant).values(logout_run="run-1"))
        forget_participant(connection, SP, ANNA, subject("first", "s1"))
    assert name_ids(database) == ["first"]

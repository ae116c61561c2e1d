"""What the login's hot path sends to the database: the QR page's poll, the revocation cache,
and finishing a login that a card has just authenticated.

The poll runs once a second for every waiting browser, so it must read once and write nothing
unless something changed; the revocation cache is asked on every certificate login; a card
naming one HSA-ID finishes its login in the request that presented it. Counted with
SQLAlchemy's engine events on a real SQLite file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import event, select, update

from idp.audit import record_audit_event
from idp.authn import Authentication
from idp.db import Database, create_schema
from idp.login.errors import LoginFailed, LoginReason
from idp.login.pending import PendingState, create_pending_login, load_pending_login, new_token
from idp.login.steps import LoginSteps
from idp.methods.other_device.orders import OrderStatus
from idp.methods.other_device.waiting import waiting_for_app
from idp.store.models import AuditEvent, Order, PendingLogin, SsoSession
from idp.store.revocation_cache import DatabaseRevocationCache


def new_database(tmp_path: Path) -> Database:
    """A SQLite file in ``tmp_path`` at the newest schema (no fixture: these stay unit tests)."""
    database = Database(f"sqlite:///{tmp_path / 'idp.sqlite3'}")
    create_schema(database.engine)
    return database


def statements_of(database: Database) -> list[str]:
    """The statements ``database`` sends from now on, first word of each."""
    sent: list[str] = []

    @event.listens_for(database.engine, "before_cursor_execute")
    def _note(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        sent.append(statement.split(None, 1)[0].upper())

    return sent


def start_login(database: Database) -> tuple[str, str]:
    browser = new_token()
    with database.transaction() as connection:
        pending = create_pending_login(
            connection,
            browser_token=browser,
            protocol="saml",
            protocol_state={"request_id": "id-1"},
            client_id="https://sp.example.test/metadata",
            client_name="Treserva",
            force_authn=False,
            ttl_seconds=300,
        )
    return pending.id, browser


def test_a_poll_that_changes_nothing_reads_once_and_writes_nothing(tmp_path: Path) -> None:
    database = new_database(tmp_path)
    reference, browser = start_login(database)
    first = waiting_for_app(database, reference, browser, start_new=False)
    assert first.order is not None and first.order.status == OrderStatus.PENDING
    sent = statements_of(database)
    again = waiting_for_app(database, reference, browser, start_new=False)
    assert sent == ["SELECT"]
    assert again.state == PendingState.PENDING and again.client_name == "Treserva"
    assert again.order is not None and again.order.order_ref == first.order.order_ref
    assert again.order.hint_code == "outstandingTransaction"


def test_a_poll_after_the_order_expired_fails_it_once(tmp_path: Path) -> None:
    database = new_database(tmp_path)
    reference, browser = start_login(database)
    order = waiting_for_app(database, reference, browser, start_new=False).order
    assert order is not None
    with database.transaction() as connection:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        connection.execute(
            update(Order).where(Order.order_ref == order.order_ref).values(expires_at=past)
        )
    sent = statements_of(database)
    expired = waiting_for_app(database, reference, browser, start_new=False).order
    assert sent == ["SELECT", "UPDATE"]
    assert expired is not None
    assert (expired.status, expired.hint_code) == (OrderStatus.FAILED, "expiredTransaction")
    sent.clear()
    waiting_for_app(database, reference, browser, start_new=False)
    assert sent == ["SELECT"]  # failed already: nothing more to write


def test_a_poll_from_another_browser_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    database = new_database(tmp_path)
    reference, browser = start_login(database)
    waiting_for_app(database, reference, browser, start_new=False)
    sent = statements_of(database)
    with pytest.raises(LoginFailed) as refused:
        waiting_for_app(database, reference, new_token(), start_new=False)
    assert refused.value.reason == LoginReason.OTHER_BROWSER
    with pytest.raises(LoginFailed) as unknown:
        waiting_for_app(database, "no-such-login", browser, start_new=False)
    assert unknown.value.reason == LoginReason.UNKNOWN_LOGIN
    assert sent == ["SELECT", "SELECT"]


def test_the_revocation_cache_answers_a_known_good_answer_without_a_query(
    tmp_path: Path,
) -> None:
    database = new_database(tmp_path)
    now = dt.datetime.now(dt.UTC)
    cache = DatabaseRevocationCache(database)
    cache.put("card", "good", now + dt.timedelta(seconds=30))
    sent = statements_of(database)
    assert cache.get("card", now) == "good"
    assert sent == []
    # Past its time it is asked for again, and the stored row is just as stale.
    assert cache.get("card", now + dt.timedelta(seconds=31)) is None
    assert sent == ["SELECT"]
    # Another node's cache (a new object) reads the row once, then remembers it.
    other = DatabaseRevocationCache(database)
    assert other.get("card", now) == "good"
    assert other.get("card", now) == "good"
    assert sent == ["SELECT", "SELECT"]


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


def test_a_login_one_hsa_id_authenticated_is_finished_by_one_update(tmp_path: Path) -> None:
    database = new_database(tmp_path)
    reference, browser = start_login(database)
    steps = LoginSteps(database, record_audit_event, sso_ttl_seconds=3600)
    sent = statements_of(database)
    with database.transaction() as connection:
        pending = load_pending_login(
            connection, reference, browser, expected_state=PendingState.PENDING
        )
        finished = steps.finish_authenticated(connection, pending, ANNA)
    # Who logged in and the finish in one UPDATE; then the SSO session and the audit event.
    assert sent == ["SELECT", "UPDATE", "INSERT", "INSERT"]
    assert finished.authentication == ANNA and not finished.repeated
    assert finished.protocol_state == {"request_id": "id-1"}
    with database.transaction() as connection:
        row = connection.execute(
            select(PendingLogin.state, PendingLogin.authentication, PendingLogin.candidate_hsa_ids)
        ).one()
        sessions = connection.execute(select(SsoSession.hsa_id)).scalars().all()
        audited = connection.execute(select(AuditEvent.event, AuditEvent.outcome)).all()
    assert tuple(row) == (PendingState.COMPLETED, ANNA.to_json(), None)
    assert sessions == [ANNA.hsa_id]
    assert [tuple(event) for event in audited] == [("login", "success")]
    # The browser that completed it may have it answered again (the repeat window), with its
    # protocol's part settled in the same transaction.
    settled_in: list[object] = []

    def settle(session: object, finished: object) -> str:
        settled_in.append(session)
        return "settled"

    again = steps.choose_or_finish(reference, browser, settle)
    assert not isinstance(again, list)
    repeated, settled = again
    assert repeated.repeated and repeated.authentication == ANNA and settled == "settled"
    assert len(settled_in) == 1


def test_finishing_a_login_another_request_finished_is_refused_and_writes_nothing(
    tmp_path: Path,
) -> None:
    database = new_database(tmp_path)
    reference, browser = start_login(database)
    steps = LoginSteps(database, record_audit_event, sso_ttl_seconds=3600)
    with database.transaction() as connection:
        late = load_pending_login(
            connection, reference, browser, expected_state=PendingState.PENDING
        )
    with database.transaction() as connection:
        first = load_pending_login(
            connection, reference, browser, expected_state=PendingState.PENDING
        )
        steps.finish_authenticated(connection, first, ANNA)
    with pytest.raises(LoginFailed) as refused, database.transaction() as connection:
        steps.finish_authenticated(connection, late, ANNA)  # read before the first finished
    assert refused.value.reason == LoginReason.LOGIN_ALREADY_COMPLETED
    with database.transaction() as connection:
        assert connection.execute(select(SsoSession.hsa_id)).scalars().all() == [ANNA.hsa_id]
        assert len(connection.execute(select(AuditEvent.id)).all()) == 1

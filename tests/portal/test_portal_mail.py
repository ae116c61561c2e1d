"""Mail over real SMTP: the outbox hands mails to an SMTP server on 127.0.0.1 (aiosmtpd); while
the server is down the mails wait in the outbox and the order is kept."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from idp.db import stored_utc
from portal import mail, orders
from portal.config import Settings
from portal.db import Database
from portal.models import FORWARDED, Order, OutboxMail
from tests.helpers.support import free_port
from tests.portal.conftest import EKU, IT, PROVIDER
from tests.portal.smtp_sink import SmtpSink
from tests.portal.test_portal_orders import good


@pytest.fixture
def sink_port() -> int:
    return free_port()


@pytest.fixture
def settings(tmp_path: Path, sink_port: int) -> Settings:
    return Settings(
        var_dir=tmp_path,
        base_url="https://portal.example.test",
        session_secret="x" * 40,
        smtp_port=sink_port,
        outbox_retry_seconds=1,
    )


@pytest.fixture
def sink(sink_port: int) -> Iterator[SmtpSink]:
    server = SmtpSink(sink_port).start()
    yield server
    server.stop()


def forwarded_order(database: Database, settings: Settings) -> int:
    with database.session() as session:
        order = orders.place_order(session, good(1), PROVIDER, IT)
        order = orders.register_case(session, order.id, order.version, EKU)
        order = orders.confirm_order(session, order.id, order.version, EKU)
        return orders.forward_order(session, settings, order.id, order.version, EKU).id


def test_mails_reach_the_smtp_server_in_swedish(
    database: Database, settings: Settings, sink: SmtpSink
) -> None:
    order_id = forwarded_order(database, settings)
    assert mail.send_due(settings, database.session) == (2, 0)
    to_contact = sink.wait_for("it@omsorgvast.example.invalid")[0]
    to_recipient = sink.wait_for("fatima.fors1@omsorgvast.example.invalid")[0]
    with database.session() as session:
        order = session.get(Order, order_id)
    assert to_contact["Subject"] == (
        f"Beställning av certifikat och HSA-ID mottagen – ärende {order.case_number}"
    )
    assert f"Tilldelat HSA-ID i Göteborgs Stad: {order.hsa_id}" in to_contact.get_content()
    assert to_recipient["From"] == settings.smtp_sender
    assert "Sätt i kortet" in to_recipient.get_content()
    assert "https://portal.example.test/hamta/" in to_recipient.get_content()
    # Sent once: nothing is due any more.
    assert mail.send_due(settings, database.session) == (0, 0)


def test_smtp_down_keeps_order_and_mail_and_retries(
    database: Database, settings: Settings, sink_port: int
) -> None:
    order_id = forwarded_order(database, settings)
    # Nobody listens on the port: the mails stay, with the error and a later attempt.
    assert mail.send_due(settings, database.session) == (0, 2)
    with database.session() as session:
        assert session.get(Order, order_id).state == FORWARDED
        waiting = session.scalars(select(OutboxMail)).all()
        assert all(m.sent_at is None and m.attempts == 1 for m in waiting)
        assert all("ConnectionRefusedError" in m.last_error for m in waiting)
        first_retry = waiting[0].next_attempt_at
    # Not due yet: nothing is tried.
    assert mail.send_due(settings, database.session) == (0, 0)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    assert mail.send_due(settings, database.session, now=later) == (0, 2)
    with database.session() as session:
        second = session.scalars(select(OutboxMail)).first()
        # Backing off: the second wait is longer than the first.
        assert second.attempts == 2
        assert stored_utc(second.next_attempt_at) - later > dt.timedelta(seconds=1)
        assert first_retry < second.next_attempt_at
    sink = SmtpSink(sink_port).start()
    try:
        with database.session() as session:
            assert mail.retry_now(session) == 2
        assert mail.send_due(settings, database.session) == (2, 0)
        assert len(sink.wait_for("fatima.fors1@omsorgvast.example.invalid")) == 1
        assert len(sink.wait_for("it@omsorgvast.example.invalid")) == 1
    finally:
        sink.stop()

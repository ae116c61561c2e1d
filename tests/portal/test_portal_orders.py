"""Steps 1-5 of the routine at the portal's core, on a real (SQLite) database migrated by the
portal's Alembic migrations: orders one at a time and by CSV, the EKU administrator's case
number, HSA-ID and forwarding, the audit trail, and two administrators acting at once."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from idp.hsa_id import parse_hsa_id
from portal import audit, orders
from portal.config import Settings, today
from portal.db import Database
from portal.models import (
    CONFIRMED,
    FORWARDED,
    REGISTERED,
    REQUESTED,
    AllocatedHsaId,
    Order,
    OutboxMail,
)
from portal.order_csv import read_orders
from portal.orders import OrderInput
from portal.refusals import Refused
from tests.portal.conftest import EKU, IT, PROVIDER

IN_A_YEAR = (today() + dt.timedelta(days=365)).isoformat()


def card_number(n: int) -> str:
    return f"9752{n:015d}"


def good(n: int = 1, **changes: str) -> OrderInput:
    fields = {
        "card_issuer": "Inera AB",
        "card_number": card_number(n),
        "valid_to": IN_A_YEAR,
        "given_name": "Fatima",
        "surname": f"Fors{n}",
        "mail": f"fatima.fors{n}@omsorgvast.example.invalid",
        "windows_account": f"OMSORGVAST\\fatima.fors{n}",
        **changes,
    }
    return OrderInput(**fields)


def test_one_order_is_placed_and_audited(database: Database) -> None:
    with database.session() as session:
        order = orders.place_order(
            session, good(1, card_number="9752 0000 0000 0000 001"), PROVIDER, IT
        )
        order_id = order.id
    with database.session() as session:
        order = session.get(Order, order_id)
        assert order.state == REQUESTED and order.step == 1
        assert order.card_number == card_number(1)
        events = audit.events_for(session, order_id)
        assert [(e.actor, e.action) for e in events] == [(IT, "order_placed")]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"card_number": "1234"}, "card_number_format"),
        ({"card_number": "9752000000000000000x"}, "card_number_format"),
        ({"card_issuer": "Someone AB"}, "card_issuer_unknown"),
        ({"valid_to": "31/12/2030"}, "valid_to_format"),
        ({"valid_to": today().isoformat()}, "valid_to_past"),
        ({"valid_to": "2001-01-01"}, "valid_to_past"),
        ({"valid_to": (today() + dt.timedelta(days=800)).isoformat()}, "valid_to_too_late"),
        ({"given_name": " "}, "name_missing"),
        ({"mail": "fatima at example"}, "mail_format"),
        ({"windows_account": "fatima"}, "windows_account_format"),
        ({"surname": "Fors\tTab"}, "control_character"),
    ],
)
def test_bad_input_is_refused_with_its_reason(
    database: Database, changes: dict[str, str], reason: str
) -> None:
    with pytest.raises(Refused) as refused, database.session() as session:
        orders.place_order(session, good(1, **changes), PROVIDER, IT)
    assert refused.value.reason == reason
    assert refused.value.words.sv and refused.value.words.en
    with database.session() as session:
        assert session.scalars(select(Order)).all() == []


def test_the_same_card_or_recipient_twice_is_refused(database: Database) -> None:
    with database.session() as session:
        orders.place_order(session, good(1), PROVIDER, IT)
    with pytest.raises(Refused) as refused, database.session() as session:
        orders.place_order(session, good(2, card_number=card_number(1)), PROVIDER, IT)
    assert refused.value.reason == "card_already_ordered"
    with pytest.raises(Refused) as refused, database.session() as session:
        orders.place_order(
            session, good(2, mail="FATIMA.fors1@omsorgvast.example.invalid"), PROVIDER, IT
        )
    assert refused.value.reason == "recipient_has_hsa_id"


def csv_of(rows: list[OrderInput]) -> bytes:
    lines = ["card_issuer,card_number,valid_to,given_name,surname,mail,windows_account"]
    for row in rows:
        lines.append(
            ",".join(
                [
                    row.card_issuer,
                    row.card_number,
                    row.valid_to,
                    row.given_name,
                    row.surname,
                    row.mail,
                    row.windows_account,
                ]
            )
        )
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def test_csv_with_bad_rows_imports_nothing_and_names_every_line(database: Database) -> None:
    rows = [good(n) for n in range(1, 8)]
    rows[2] = good(3, card_number="12")  # line 4
    rows[4] = good(5, card_number=card_number(2))  # line 6: repeats line 3's card
    rows[6] = good(7, valid_to="2000-01-01")  # line 8
    parsed, shape_errors = read_orders(csv_of(rows))
    assert shape_errors == []
    with database.session() as session:
        placed, errors = orders.place_orders(session, parsed, PROVIDER, IT)
    assert placed == []
    assert [(e.line, e.reason) for e in errors] == [
        (4, "card_number_format"),
        (6, "card_already_ordered"),
        (8, "valid_to_past"),
    ]
    assert "line 3" in errors[1].detail
    with database.session() as session:
        assert session.scalars(select(Order)).all() == []


def test_csv_shape_errors() -> None:
    assert read_orders(b"\xff\xfe")[1][0].reason == "csv_encoding"
    assert read_orders(b"card,number\r\n1,2\r\n")[1][0].reason == "csv_header"
    header = b"card_issuer,card_number,valid_to,given_name,surname,mail\r\n"
    assert read_orders(header)[1][0].reason == "csv_empty"
    _rows, errors = read_orders(header + b"a,b,c,d,e,f,g,h\r\n")
    assert [(e.line, e.reason) for e in errors] == [(2, "csv_fields")]


def test_csv_of_good_rows_places_all_with_progress(database: Database) -> None:
    parsed, _ = read_orders(csv_of([good(n) for n in range(1, 61)]))
    seen: list[tuple[int, int]] = []
    with database.session() as session:
        placed, errors = orders.place_orders(
            session, parsed, PROVIDER, IT, progress=lambda done, total: seen.append((done, total))
        )
    assert errors == [] and len(placed) == 60
    assert seen[-1] == (120, 120) and len(seen) > 2
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def run_steps_2_to_5(database: Database, settings: Settings, order_id: int) -> Order:
    with database.session() as session:
        version = session.get(Order, order_id).version
        order = orders.register_case(session, order_id, version, EKU)
        assert order.state == REGISTERED
        order = orders.confirm_order(session, order_id, order.version, EKU)
        assert order.state == CONFIRMED
        return orders.forward_order(session, settings, order_id, order.version, EKU)


def test_eku_registers_confirms_and_forwards(database: Database, settings: Settings) -> None:
    with database.session() as session:
        order_id = orders.place_order(session, good(1), PROVIDER, IT).id
    order = run_steps_2_to_5(database, settings, order_id)
    assert order.state == FORWARDED and order.step == 5
    assert re.fullmatch(rf"EKU-{today().year}-\d{{5}}", order.case_number)
    assert parse_hsa_id(order.hsa_id).organisation_number == "2120001355"
    assert order.hsa_id.startswith("SE2120001355-")
    assert order.link_expires_at is not None and order.link_digest
    with database.session() as session:
        actions = [(e.actor, e.action) for e in audit.events_for(session, order_id)]
        mails = session.scalars(select(OutboxMail).order_by(OutboxMail.id)).all()
    assert actions == [
        (IT, "order_placed"),
        (EKU, "case_registered"),
        (EKU, "order_confirmed"),
        (EKU, "order_forwarded"),
    ]
    assert [m.recipient for m in mails] == [
        "it@omsorgvast.example.invalid",
        "fatima.fors1@omsorgvast.example.invalid",
    ]
    assert order.case_number in mails[0].subject and order.hsa_id in mails[0].body
    assert "https://portal.example.test/hamta/" in mails[1].body


def test_hsa_ids_are_unique_and_never_reused(database: Database, settings: Settings) -> None:
    with database.session() as session:
        ids = [orders.place_order(session, good(n), PROVIDER, IT).id for n in range(1, 6)]
    allocated = [run_steps_2_to_5(database, settings, i).hsa_id for i in ids]
    assert len(set(allocated)) == 5
    # A confirmation that is rolled back still never hands its number to anyone else.
    with database.session() as session:
        extra = orders.place_order(session, good(9), PROVIDER, IT)
        orders.register_case(session, extra.id, extra.version, EKU)
        extra_id, version = extra.id, extra.version
    with pytest.raises(RuntimeError), database.session() as session:
        orders.confirm_order(session, extra_id, version, EKU)
        raise RuntimeError("the transaction fails after the allocation")
    with database.session() as session:
        # Orders are never deleted; but even a deleted order's HSA-ID stays allocated.
        kept = set(session.scalars(select(AllocatedHsaId.hsa_id)))
        order = orders.confirm_order(session, extra_id, version, EKU)
    assert kept == set(allocated)
    assert order.hsa_id not in allocated
    # Another series (Settings.hsa_id_series) shares the counter: still never a repeat.
    with database.session() as session:
        other = orders.place_order(session, good(10), PROVIDER, IT)
        orders.register_case(session, other.id, other.version, EKU)
        other = orders.confirm_order(session, other.id, other.version, EKU, "T")
    assert re.fullmatch(r"SE2120001355-T\d{6}", other.hsa_id)


def test_an_action_on_an_order_already_acted_on_is_told(database: Database) -> None:
    with database.session() as session:
        order = orders.place_order(session, good(1), PROVIDER, IT)
        order_id, seen_version = order.id, order.version
    # Both administrators opened the list at version 1; the first registers.
    with database.session() as session:
        orders.register_case(session, order_id, seen_version, EKU)
    with pytest.raises(Refused) as refused, database.session() as session:
        orders.register_case(session, order_id, seen_version, "SE2120001355-E0001")
    assert refused.value.reason == "concurrent_change"
    with database.session() as session:
        case_events = [
            e for e in audit.events_for(session, order_id) if e.action == "case_registered"
        ]
    assert [e.actor for e in case_events] == [EKU]


def test_two_administrators_writing_at_the_same_moment(database: Database) -> None:
    """Both read the order at the same version; the second write finds it changed."""
    with database.session() as session:
        order = orders.place_order(session, good(1), PROVIDER, IT)
        order_id, version = order.id, order.version
    first = database._sessions()
    second = database._sessions()
    try:
        first.begin()
        second.begin()
        a = orders.order_for_action(first, order_id, version, REQUESTED)
        b = orders.order_for_action(second, order_id, version, REQUESTED)
        a.state = REGISTERED
        orders.commit_step(first, a)
        first.commit()
        b.state = REGISTERED
        with pytest.raises(Refused) as refused:
            orders.commit_step(second, b)
        assert refused.value.reason == "concurrent_change"
        second.rollback()
    finally:
        first.close()
        second.close()

"""Steps 7 and 8 of the routine, which reach into mock Treserva.

7. :func:`push_to_treserva` — the HSA-ID onto the employee's Treserva account by SCIM;
8. :func:`raise_ticket` — the IT-kontaktperson's support ticket "move my permissions from the
   Windows login to the SITHS login"; :func:`carry_out_ticket` — the support (an EKU
   administrator) carries it out in Treserva, and the outcome lands on the ticket.

The call to Treserva happens outside any database transaction; the order is then moved on
only if nobody else moved it meanwhile (its version), so a repeated or concurrent click is told,
and the Treserva side is idempotent.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from portal import audit
from portal.config import Settings
from portal.db import Database
from portal.models import IN_TRESERVA, ISSUED, PERMISSIONS_MOVED, Order, Ticket
from portal.orders import commit_step, order_for_action
from portal.refusals import Refused
from portal.treserva import TreservaClient

OPEN, DONE, FAILED = "open", "done", "failed"


def push_to_treserva(
    database: Database, settings: Settings, order_id: int, version: int, actor: str
) -> Order:
    """Step 7 by SCIM: create or patch the account of the order's Windows account."""
    with database.session() as session:
        order = order_for_action(session, order_id, version, ISSUED)
        if not order.windows_account:
            raise Refused("no_windows_account")
        user_name, display_name, hsa_id = order.windows_account, order.display_name, order.hsa_id
    assert hsa_id is not None
    with TreservaClient(settings) as treserva:
        upserted = treserva.upsert_hsa_id(user_name, display_name, hsa_id)
    with database.session() as session:
        order = order_for_action(session, order_id, version, ISSUED)
        order.state = IN_TRESERVA
        order.scim_id = upserted.scim_id
        commit_step(session, order)
        how = "created" if upserted.created else ("patched" if upserted.changed else "unchanged")
        audit.record(
            session,
            actor,
            "treserva_hsa_id",
            order_id=order.id,
            detail=f"SCIM {how} {user_name} id {upserted.scim_id}: {hsa_id}",
        )
        return order


def raise_ticket(database: Database, order_id: int, version: int, actor: str) -> Ticket:
    """Step 8's ticket, for an order whose HSA-ID is in Treserva."""
    with database.session() as session:
        order = order_for_action(session, order_id, version, IN_TRESERVA)
        if session.scalar(
            select(Ticket.id).where(Ticket.order_id == order.id, Ticket.state == OPEN)
        ):
            raise Refused("ticket_open")
        ticket = Ticket(
            order_id=order.id, state=OPEN, raised_by=actor, raised_at=dt.datetime.now(dt.UTC)
        )
        session.add(ticket)
        session.flush()
        audit.record(session, actor, "ticket_raised", order_id=order.id, detail=f"T-{ticket.id}")
        return ticket


def carry_out_ticket(database: Database, settings: Settings, ticket_id: int, actor: str) -> Ticket:
    """Carry out an open ticket in Treserva; the outcome (moved, or why not) is recorded on the
    ticket either way, and the order reaches step 8 when the move was made."""
    with database.session() as session:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None or ticket.state != OPEN:
            raise Refused("wrong_state", f"ticket {ticket_id}")
        order = session.get(Order, ticket.order_id)
        assert order is not None
        user_name, order_id = order.windows_account, order.id
    try:
        with TreservaClient(settings) as treserva:
            outcome, state = treserva.move_permissions(user_name, f"T-{ticket_id}"), DONE
    except Refused as refused:
        if refused.reason == "treserva_unavailable":
            raise  # nothing happened: the ticket stays open, to be tried again
        outcome, state = f"{refused.words.sv} {refused.detail}", FAILED
    with database.session() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        if ticket.state != OPEN:
            raise Refused("concurrent_change", f"ticket {ticket_id}")
        ticket.state, ticket.outcome = state, outcome
        if state == DONE:
            order = session.get(Order, order_id)
            assert order is not None
            order.state = PERMISSIONS_MOVED
            commit_step(session, order)
        audit.record(
            session, actor, f"ticket_{state}", order_id=order_id, detail=f"T-{ticket_id}: {outcome}"
        )
        return ticket

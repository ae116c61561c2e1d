"""The QR page's transactions: the login waiting for the app, its current order, cancelling it.

Plain Python (the pages are :mod:`idp.methods.other_device.browser`); every call is bound to
the login *and* the browser's cookie token, checked by
:func:`idp.login.pending.load_pending_login` before the order is looked at.
"""

from __future__ import annotations

from dataclasses import dataclass

from idp.audit import record_audit_event
from idp.db import Database, Transaction
from idp.login.pending import PendingLoginRecord, PendingState, check_pending_login
from idp.methods.other_device.orders import (
    OrderRecord,
    OrderStatus,
    create_order,
    expire_if_due,
    fail_order,
    latest_order,
    login_and_latest_order,
    now_utc,
)
from idp.methods.other_device.signing import METHOD

ORDER_TTL_SECONDS = 180
# A method has succeeded: the page sends the browser on to /login/continue.
FINISHED_STATES = (PendingState.AUTHENTICATED, PendingState.CHOOSING)


@dataclass(frozen=True)
class WaitingForApp:
    """The login's state and, while it waits, its current order (None once it has finished)."""

    state: PendingState
    order: OrderRecord | None
    client_name: str


def waiting_for_app(
    database: Database, reference: str, browser: str | None, *, start_new: bool
) -> WaitingForApp:
    """This browser's login and its current order; starts an order if asked or none exists."""
    with database.transaction() as session:
        # Once a second per waiting browser: the login and its order in one query, and no
        # write unless the order's time ran out. Every check on the login is
        # load_pending_login's, made before the order is looked at.
        read, order = login_and_latest_order(session, reference)
        pending = check_pending_login(
            read, browser, expected_state=(PendingState.PENDING, *FINISHED_STATES)
        )
        if pending.state in FINISHED_STATES:
            return WaitingForApp(PendingState(pending.state), None, pending.client_name)
        if order is not None:
            expire_if_due(session, order, now_utc())
        if order is None or (start_new and order.status != OrderStatus.PENDING):
            order = create_order(
                session,
                pending,
                user_visible_data=(
                    f"Inloggning till {pending.client_name} via Göteborgs Stads Åtkomsttjänst"
                ),
                ttl_seconds=ORDER_TTL_SECONDS,
            )
            record_audit_event(
                session,
                "order.created",
                outcome="pending",
                client_id=pending.client_id,
                method=METHOD,
                detail=f"order {order.order_ref}",
            )
        return WaitingForApp(PendingState.PENDING, order, pending.client_name)


def cancel_live_order(session: Transaction, pending: PendingLoginRecord) -> None:
    """Fail the login's order if it is still live (the app is told ``cancelled``) and audit
    it; for :meth:`idp.login.steps.LoginSteps.cancel` to run in the cancelling transaction."""
    order = latest_order(session, pending.id)
    if order is not None and order.status == OrderStatus.PENDING:
        fail_order(session, order, "cancelled", "")
        record_audit_event(
            session,
            "login.method",
            outcome="failure",
            reason="cancelled",
            client_id=pending.client_id,
            method=METHOD,
            detail=f"order {order.order_ref}",
        )

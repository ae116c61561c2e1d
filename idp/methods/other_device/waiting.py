"""The QR page's transactions: the login waiting for the app, its current order, cancelling it.

Plain Python (the pages are :mod:`idp.methods.other_device.browser`); every call is bound to
the login *and* the browser's cookie token, checked by
:func:`idp.login.pending.load_pending_login` before the order is looked at.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from idp.audit import record_audit_event
from idp.db import Database
from idp.login.pending import PendingState, load_pending_login
from idp.methods.other_device.orders import (
    create_order,
    expire_if_due,
    fail_order,
    latest_order,
    now_utc,
    prefetch_login_and_latest_order,
)
from idp.methods.other_device.signing import METHOD
from idp.store.models import Order, PendingLogin

ORDER_TTL_SECONDS = 180
# A method has succeeded: the page sends the browser on to /login/continue.
FINISHED_STATES = (PendingState.AUTHENTICATED, PendingState.CHOOSING)


@dataclass(frozen=True)
class WaitingForApp:
    """The login's state and, while it waits, its current order (None once it has finished)."""

    state: str
    order: Order | None
    client_name: str


def waiting_for_app(
    database: Database, reference: str, browser: str | None, *, start_new: bool
) -> WaitingForApp:
    """This browser's login and its current order; starts an order if asked or none exists."""
    with database.session() as session:
        # Once a second per waiting browser: the login and its order in one query. Every
        # check on the login is still load_pending_login's (which finds the prefetched row in
        # the session), made before the order is looked at.
        _prefetched, order = prefetch_login_and_latest_order(session, reference)
        pending = load_pending_login(
            session,
            reference,
            browser,
            expected_state=(PendingState.PENDING, *FINISHED_STATES),
        )
        if pending.state in FINISHED_STATES:
            return WaitingForApp(pending.state, None, pending.client_name)
        if order is not None:
            expire_if_due(session, order, now_utc())
        if order is None or (start_new and order.status != "pending"):
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
        return WaitingForApp(pending.state, order, pending.client_name)


def cancel_live_order(session: Session, pending: PendingLogin) -> None:
    """Fail the login's order if it is still live (the app is told ``cancelled``) and audit
    it; for :meth:`idp.login.steps.LoginSteps.cancel` to run in the cancelling transaction."""
    order = latest_order(session, pending.id)
    if order is not None and order.status == "pending":
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

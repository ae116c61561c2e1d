"""The SITHS eID app's steps: scan (claim the order), sign, cancel. Plain Python, built once at
start-up; each step is one transaction (and a refused step's audit event, when the step's own
transaction was rolled back, one more).

Refusals are :class:`idp.methods.other_device.orders.OrderRefused`: its ``reason`` is the API's
``errorCode`` and its ``status_code`` the HTTP status; the app API
(:mod:`idp.methods.other_device.app_api`) only parses, calls and maps them.
"""

from __future__ import annotations

from dataclasses import dataclass

from idp.audit import AuditSink
from idp.db import Database
from idp.login.authenticate import CertificateAuthentication
from idp.methods.other_device.orders import (
    OrderRecord,
    OrderRefused,
    OrderStatus,
    claim_by_auto_start,
    claim_by_qr,
    fail_order,
    now_utc,
    order_for_app,
)
from idp.methods.other_device.signing import METHOD, SignedOrder, complete_signed_order


@dataclass(frozen=True)
class ScannedOrder:
    """An order claimed by the app that scanned it: what the app shows and signs."""

    order_ref: str
    sign_token: str
    data_to_sign: str
    user_visible_data: str


@dataclass(frozen=True)
class OrderState:
    order_ref: str
    status: str
    hint_code: str


class AppOrderSteps:
    """Safe to share between threads; each method blocks (call it from a worker thread)."""

    def __init__(
        self, database: Database, authenticator: CertificateAuthentication, audit: AuditSink
    ) -> None:
        self._database = database
        self._authenticator = authenticator
        self._audit = audit

    def scan(self, qr_code: str | None, auto_start_token: str | None) -> ScannedOrder:
        """Claim the order whose QR code (or, for the app on this device, autoStartToken) the
        app has. A refusal is audited (``app.scan``) and raised; nothing else changes."""
        try:
            with self._database.transaction() as session:
                now = now_utc()
                if qr_code:
                    order, sign_token = claim_by_qr(session, qr_code, now)
                elif auto_start_token:
                    order, sign_token = claim_by_auto_start(session, auto_start_token, now)
                else:
                    raise OrderRefused("invalidParameters", "give qrCode or autoStartToken")
        except OrderRefused as exc:
            self._audit_refusal("app.scan", exc)
            raise
        return ScannedOrder(
            order.order_ref, sign_token, order.data_to_sign, order.user_visible_data
        )

    def sign(self, signed: SignedOrder) -> OrderState:
        """Complete the order once if the signature and the certificate hold.

        A bad signature or certificate fails the order (committed, audited with it) and is
        raised; an order that is unknown, not this app's or no longer open is audited
        (``app.sign``) and raised with nothing changed."""
        try:
            with self._database.transaction() as session:
                outcome = complete_signed_order(session, self._authenticator, signed)
        except OrderRefused as exc:
            self._audit_refusal("app.sign", exc)
            raise
        if outcome.refused is not None:
            raise outcome.refused
        return OrderState(outcome.order_ref, OrderStatus.COMPLETE, "")

    def cancel(self, order_ref: str, sign_token: str) -> OrderState:
        """The user cancelled in the app that claimed the order: the order fails
        (``userCancel``, which the QR page shows) and is audited."""
        with self._database.transaction() as session:
            order = order_for_app(session, order_ref, sign_token, now_utc())
            fail_order(session, order, "userCancel", "user_cancel")
            self._audit(
                session,
                "login.method",
                outcome="failure",
                reason="user_cancel",
                method=METHOD,
                detail=f"order {order.order_ref}",
            )
            return _state(order)

    def _audit_refusal(self, event: str, refused: OrderRefused) -> None:
        with self._database.transaction() as session:
            self._audit(
                session,
                event,
                outcome="rejected",
                reason=refused.reason,
                method=METHOD,
                detail=refused.detail,
            )


def _state(order: OrderRecord) -> OrderState:
    return OrderState(order.order_ref, order.status, order.hint_code)

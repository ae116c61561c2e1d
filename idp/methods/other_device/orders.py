"""Order state: created for one pending login in one browser, scanned by one app, finished once.

Status and hint codes follow the BankID relying-party API's vocabulary:
``pending``/``outstandingTransaction`` → (scan) ``pending``/``userSign`` → ``complete``; or
``failed`` with ``expiredTransaction``, ``certificateErr``, ``userCancel`` or ``cancelled``.
Every transition is a conditional UPDATE, so two racing requests cannot both win.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import secrets
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from idp.db import stored_utc
from idp.errors import Refusal
from idp.login.pending import token_hash
from idp.methods.other_device.qr import (
    QR_MAX_AGE_SECONDS,
    parse_qr_content,
    qr_content,
    qr_is_authentic,
)
from idp.store.models import Order, PendingLogin

SIGN_CONTEXT = b"SITHS-eID-authentication-v1"


class OrderRefused(Refusal):
    """The app's request is refused. ``reason`` is the app API's stable ``errorCode``;
    ``status_code`` the HTTP status it is answered with."""

    def __init__(self, reason: str, detail: str, status_code: int = 400) -> None:
        super().__init__(reason, detail)
        self.status_code = status_code


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_order(
    session: Session, pending: PendingLogin, *, user_visible_data: str, ttl_seconds: int
) -> Order:
    """A new order for ``pending``; any earlier live order of that login is cancelled."""
    session.execute(
        update(Order)
        .where(Order.pending_login_id == pending.id, Order.status == "pending")
        .values(status="failed", hint_code="cancelled")
    )
    order_ref = str(uuid.uuid4())
    challenge = secrets.token_bytes(32)
    # What the app signs: a fixed context, this order, a fresh challenge and the text the user
    # is shown. Binding the order ref stops a signature from one order completing another.
    data = b"\n".join(
        [
            SIGN_CONTEXT,
            order_ref.encode("ascii"),
            base64.b64encode(challenge),
            user_visible_data.encode("utf-8"),
        ]
    )
    now = now_utc()
    order = Order(
        order_ref=order_ref,
        pending_login_id=pending.id,
        browser_binding=pending.browser_binding,
        qr_start_token=secrets.token_urlsafe(24),
        qr_start_secret=secrets.token_hex(32),
        auto_start_token=str(uuid.uuid4()),
        data_to_sign=base64.b64encode(data).decode("ascii"),
        user_visible_data=user_visible_data,
        status="pending",
        hint_code="outstandingTransaction",
        created_at=now,
        expires_at=now + dt.timedelta(seconds=ttl_seconds),
    )
    session.add(order)
    session.flush()
    return order


def latest_order(session: Session, pending_login_id: str) -> Order | None:
    return session.scalars(
        select(Order)
        .where(Order.pending_login_id == pending_login_id)
        .order_by(Order.created_at.desc())
        .limit(1)
    ).first()


def prefetch_login_and_latest_order(
    session: Session, reference: str
) -> tuple[PendingLogin | None, Order | None]:
    """Pending login ``reference`` and its latest order, read together; no check by itself.

    One query where the browser's poll needed two. While the caller holds the returned login
    (the session's identity map keeps objects only as long as someone does), the
    :func:`idp.login.pending.load_pending_login` that must follow (this browser's? unexpired?
    in which state?) finds it in the session without another query.
    """
    if not reference:
        return None, None
    row = session.execute(
        select(PendingLogin, Order)
        .outerjoin(Order, Order.pending_login_id == PendingLogin.id)
        .where(PendingLogin.id == reference[:64])
        .order_by(Order.created_at.desc())
        .limit(1)
    ).first()
    return (row[0], row[1]) if row is not None else (None, None)


def seconds_since_start(order: Order, now: dt.datetime) -> int:
    return max(0, int((now - stored_utc(order.created_at)).total_seconds()))


def current_qr_content(order: Order, now: dt.datetime) -> str:
    return qr_content(order.qr_start_token, order.qr_start_secret, seconds_since_start(order, now))


def expire_if_due(session: Session, order: Order, now: dt.datetime) -> None:
    if order.status == "pending" and stored_utc(order.expires_at) <= now:
        _fail(session, order, "expiredTransaction", "expired_order")


def _fail(session: Session, order: Order, hint_code: str, reason: str) -> None:
    session.execute(
        update(Order)
        .where(Order.order_ref == order.order_ref, Order.status == "pending")
        .values(status="failed", hint_code=hint_code, failure_reason=reason)
    )
    session.refresh(order)


def fail_order(session: Session, order: Order, hint_code: str, reason: str) -> None:
    """Fail a pending order (no effect on one already finished)."""
    _fail(session, order, hint_code, reason)


def _live_order(session: Session, order: Order | None, now: dt.datetime) -> Order:
    if order is None:
        raise OrderRefused("notFound", "no such order", 404)
    expire_if_due(session, order, now)
    if order.status != "pending":
        if order.hint_code == "expiredTransaction":
            raise OrderRefused("expiredTransaction", "the order has expired", 410)
        raise OrderRefused("alreadyFinished", f"the order is {order.status}", 409)
    return order


def _claim(session: Session, order: Order, hint_code: str) -> str:
    """Hand the order to this app: only the holder of the returned token may sign or cancel."""
    sign_token = secrets.token_urlsafe(32)
    claimed = session.execute(
        update(Order)
        .where(
            Order.order_ref == order.order_ref,
            Order.status == "pending",
            Order.sign_token_hash.is_(None),
        )
        .values(sign_token_hash=token_hash(sign_token), hint_code=hint_code)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise OrderRefused("alreadyInProgress", "another app has already taken this order", 409)
    session.refresh(order)
    return sign_token


def claim_by_qr(session: Session, text: str, now: dt.datetime) -> tuple[Order, str]:
    """The app scanned ``text``: check it is authentic and fresh, then claim the order."""
    scanned = parse_qr_content(text)
    if scanned is None:
        raise OrderRefused("invalidParameters", "not a SITHS eID QR code")
    order = session.scalars(
        select(Order).where(Order.qr_start_token == scanned.qr_start_token)
    ).first()
    # Authenticity first: someone without a genuine code learns nothing about the order.
    if order is None or not qr_is_authentic(scanned, order.qr_start_secret):
        raise OrderRefused("invalidQrCode", "the QR code's auth code is wrong")
    order = _live_order(session, order, now)
    age = seconds_since_start(order, now) - scanned.seconds
    if age < 0:
        raise OrderRefused("invalidQrCode", "the QR code is from the future")
    if age > QR_MAX_AGE_SECONDS:
        raise OrderRefused("staleQrCode", f"the QR code is {age} s old; scan the current one")
    return order, _claim(session, order, "userSign")


def claim_by_auto_start(session: Session, token: str, now: dt.datetime) -> tuple[Order, str]:
    """The app on this device was started with the order's autoStartToken."""
    order = session.scalars(select(Order).where(Order.auto_start_token == token[:64])).first()
    order = _live_order(session, order, now)
    return order, _claim(session, order, "userSign")


def order_for_app(session: Session, order_ref: str, sign_token: str, now: dt.datetime) -> Order:
    """The order, if the caller is the app that claimed it and it is still open."""
    order = session.get(Order, order_ref[:64])
    if order is None:
        raise OrderRefused("notFound", "no such order", 404)
    if order.sign_token_hash is None or not hmac.compare_digest(
        order.sign_token_hash, token_hash(sign_token)
    ):
        raise OrderRefused("unauthorized", "this app did not scan the order", 403)
    return _live_order(session, order, now)


def complete_order(session: Session, order: Order) -> None:
    done = session.execute(
        update(Order)
        .where(Order.order_ref == order.order_ref, Order.status == "pending")
        .values(status="complete", hint_code="", failure_reason="")
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise OrderRefused("alreadyFinished", "the order finished meanwhile", 409)
    session.refresh(order)


def order_state(order: Order) -> dict[str, Any]:
    return {
        "orderRef": order.order_ref,
        "status": order.status,
        "hintCode": order.hint_code,
    }

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
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from sqlalchemy import Update, bindparam, insert, select, update

from idp.db import Transaction, stored_utc
from idp.errors import Refusal
from idp.login.pending import PENDING_LOGIN_COLUMNS, PendingLoginRecord, token_hash
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


class OrderStatus(StrEnum):
    """The values of ``orders.status``."""

    PENDING = "pending"
    COMPLETE = "complete"
    FAILED = "failed"


@dataclass(slots=True)
class OrderRecord:
    """One row of ``orders`` (no ORM object). A transition updates the record, so the caller
    holds what the row now says without reading it again."""

    order_ref: str
    pending_login_id: str
    browser_binding: str
    qr_start_token: str
    qr_start_secret: str
    auto_start_token: str
    data_to_sign: str
    user_visible_data: str
    sign_token_hash: str | None
    status: str
    hint_code: str
    failure_reason: str
    created_at: dt.datetime
    expires_at: dt.datetime


_ORDERS = Order.__table__
_LOGINS = PendingLogin.__table__
_FIELD_NAMES = tuple(field.name for field in fields(OrderRecord))
_COLUMNS = tuple(_ORDERS.c[name] for name in _FIELD_NAMES)
# Statements built once, so SQLAlchemy's compiled cache finds them on every request.
_INSERT = insert(_ORDERS)
_CANCEL_LIVE = (
    update(_ORDERS)
    .where(
        _ORDERS.c.pending_login_id == bindparam("login"),
        _ORDERS.c.status == OrderStatus.PENDING,
    )
    .values(status=OrderStatus.FAILED, hint_code="cancelled")
)
_BY_REF = select(*_COLUMNS).where(_ORDERS.c.order_ref == bindparam("key"))
_BY_QR_TOKEN = select(*_COLUMNS).where(_ORDERS.c.qr_start_token == bindparam("key"))
_BY_AUTO_START = select(*_COLUMNS).where(_ORDERS.c.auto_start_token == bindparam("key"))
_LATEST = (
    select(*_COLUMNS)
    .where(_ORDERS.c.pending_login_id == bindparam("login"))
    .order_by(_ORDERS.c.created_at.desc())
    .limit(1)
)
# The browser's poll, once a second per waiting order: the login and its latest order in one
# indexed query (orders.pending_login_id).
_LOGIN_AND_LATEST = (
    select(*PENDING_LOGIN_COLUMNS, *_COLUMNS)
    .select_from(_LOGINS.outerjoin(_ORDERS, _ORDERS.c.pending_login_id == _LOGINS.c.id))
    .where(_LOGINS.c.id == bindparam("reference"))
    .order_by(_ORDERS.c.created_at.desc())
    .limit(1)
)
_LOGIN_BY_ID = select(*PENDING_LOGIN_COLUMNS).where(_LOGINS.c.id == bindparam("login"))


def _update_pending(*conditions: Any, **values: Any) -> Update:
    """A conditional UPDATE of one pending order (``order_ref`` bound as ``ref``)."""
    return (
        update(_ORDERS)
        .where(
            _ORDERS.c.order_ref == bindparam("ref"),
            _ORDERS.c.status == OrderStatus.PENDING,
            *conditions,
        )
        .values(**values)
    )


_FAIL = _update_pending(
    status=OrderStatus.FAILED,
    hint_code=bindparam("new_hint_code"),
    failure_reason=bindparam("new_failure_reason"),
)
_CLAIM = _update_pending(
    _ORDERS.c.sign_token_hash.is_(None),
    sign_token_hash=bindparam("new_sign_token_hash"),
    hint_code=bindparam("new_hint_code"),
)
_COMPLETE = _update_pending(status=OrderStatus.COMPLETE, hint_code="", failure_reason="")


def _order(session: Transaction, statement: Any, key: str) -> OrderRecord | None:
    row = session.execute(statement, {"key": key}).first()
    return None if row is None else OrderRecord(*row)


def create_order(
    session: Transaction,
    pending: PendingLoginRecord,
    *,
    user_visible_data: str,
    ttl_seconds: int,
) -> OrderRecord:
    """A new order for ``pending``; any earlier live order of that login is cancelled."""
    session.execute(_CANCEL_LIVE, {"login": pending.id})
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
    order = OrderRecord(
        order_ref=order_ref,
        pending_login_id=pending.id,
        browser_binding=pending.browser_binding,
        qr_start_token=secrets.token_urlsafe(24),
        qr_start_secret=secrets.token_hex(32),
        auto_start_token=str(uuid.uuid4()),
        data_to_sign=base64.b64encode(data).decode("ascii"),
        user_visible_data=user_visible_data,
        sign_token_hash=None,
        status=OrderStatus.PENDING,
        hint_code="outstandingTransaction",
        failure_reason="",
        created_at=now,
        expires_at=now + dt.timedelta(seconds=ttl_seconds),
    )
    session.execute(_INSERT, {name: getattr(order, name) for name in _FIELD_NAMES})
    return order


def latest_order(session: Transaction, pending_login_id: str) -> OrderRecord | None:
    row = session.execute(_LATEST, {"login": pending_login_id}).first()
    return None if row is None else OrderRecord(*row)


def login_and_latest_order(
    session: Transaction, reference: str
) -> tuple[PendingLoginRecord | None, OrderRecord | None]:
    """Pending login ``reference`` and its latest order, read together in one query; nothing
    checked (the caller passes the login to :func:`idp.login.pending.check_pending_login`)."""
    if not reference:
        return None, None
    row = session.execute(_LOGIN_AND_LATEST, {"reference": reference[:64]}).first()
    if row is None:
        return None, None
    split = len(PENDING_LOGIN_COLUMNS)
    pending = PendingLoginRecord.from_row(row[:split])
    order = OrderRecord(*row[split:]) if row[split] is not None else None
    return pending, order


def login_of_order(session: Transaction, order: OrderRecord) -> PendingLoginRecord | None:
    row = session.execute(_LOGIN_BY_ID, {"login": order.pending_login_id}).first()
    return None if row is None else PendingLoginRecord.from_row(row)


def seconds_since_start(order: OrderRecord, now: dt.datetime) -> int:
    return max(0, int((now - stored_utc(order.created_at)).total_seconds()))


def current_qr_content(order: OrderRecord, now: dt.datetime) -> str:
    return qr_content(order.qr_start_token, order.qr_start_secret, seconds_since_start(order, now))


def expire_if_due(session: Transaction, order: OrderRecord, now: dt.datetime) -> None:
    """Fail a pending order whose time is up; writes nothing otherwise."""
    if order.status == OrderStatus.PENDING and stored_utc(order.expires_at) <= now:
        fail_order(session, order, "expiredTransaction", "expired_order")


def fail_order(session: Transaction, order: OrderRecord, hint_code: str, reason: str) -> None:
    """Fail a pending order (no effect on one already finished); ``order`` then holds what the
    row says."""
    parameters = {"ref": order.order_ref, "new_hint_code": hint_code}
    failed = session.execute(_FAIL, {**parameters, "new_failure_reason": reason})
    if failed.rowcount == 1:  # type: ignore[attr-defined]
        order.status, order.hint_code, order.failure_reason = OrderStatus.FAILED, hint_code, reason
    else:  # finished meanwhile by another request: what it wrote
        _reread(session, order)


def _reread(session: Transaction, order: OrderRecord) -> None:
    current = _order(session, _BY_REF, order.order_ref)
    if current is not None:
        for name in _FIELD_NAMES:
            setattr(order, name, getattr(current, name))


def _live_order(session: Transaction, order: OrderRecord | None, now: dt.datetime) -> OrderRecord:
    if order is None:
        raise OrderRefused("notFound", "no such order", 404)
    expire_if_due(session, order, now)
    if order.status != OrderStatus.PENDING:
        if order.hint_code == "expiredTransaction":
            raise OrderRefused("expiredTransaction", "the order has expired", 410)
        raise OrderRefused("alreadyFinished", f"the order is {order.status}", 409)
    return order


def _claim(session: Transaction, order: OrderRecord, hint_code: str) -> str:
    """Hand the order to this app: only the holder of the returned token may sign or cancel."""
    sign_token = secrets.token_urlsafe(32)
    sign_token_hash = token_hash(sign_token)
    claimed = session.execute(
        _CLAIM,
        {
            "ref": order.order_ref,
            "new_sign_token_hash": sign_token_hash,
            "new_hint_code": hint_code,
        },
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise OrderRefused("alreadyInProgress", "another app has already taken this order", 409)
    order.sign_token_hash, order.hint_code = sign_token_hash, hint_code
    return sign_token


def claim_by_qr(session: Transaction, text: str, now: dt.datetime) -> tuple[OrderRecord, str]:
    """The app scanned ``text``: check it is authentic and fresh, then claim the order."""
    scanned = parse_qr_content(text)
    if scanned is None:
        raise OrderRefused("invalidParameters", "not a SITHS eID QR code")
    order = _order(session, _BY_QR_TOKEN, scanned.qr_start_token)
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


def claim_by_auto_start(
    session: Transaction, token: str, now: dt.datetime
) -> tuple[OrderRecord, str]:
    """The app on this device was started with the order's autoStartToken."""
    order = _live_order(session, _order(session, _BY_AUTO_START, token[:64]), now)
    return order, _claim(session, order, "userSign")


def order_for_app(
    session: Transaction, order_ref: str, sign_token: str, now: dt.datetime
) -> OrderRecord:
    """The order, if the caller is the app that claimed it and it is still open."""
    order = _order(session, _BY_REF, order_ref[:64])
    if order is None:
        raise OrderRefused("notFound", "no such order", 404)
    if order.sign_token_hash is None or not hmac.compare_digest(
        order.sign_token_hash, token_hash(sign_token)
    ):
        raise OrderRefused("unauthorized", "this app did not scan the order", 403)
    return _live_order(session, order, now)


def complete_order(session: Transaction, order: OrderRecord) -> None:
    done = session.execute(_COMPLETE, {"ref": order.order_ref})
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise OrderRefused("alreadyFinished", "the order finished meanwhile", 409)
    order.status, order.hint_code, order.failure_reason = OrderStatus.COMPLETE, "", ""

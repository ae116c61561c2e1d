"""Pending logins: created when an application asks, finished once, only in the same browser.

The browser is identified by a random cookie token; only its SHA-256 is stored. A pending
login's reference travels in URLs, so the reference alone is worth nothing: every step also
checks the browser token.

A completed login stays readable by the browser that completed it for :data:`REPEAT_WINDOW`,
so that the answer to the application can be given again if the first one was lost.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, Update, bindparam, insert, select, update

from idp.authn import Authentication
from idp.db import Transaction, stored_utc
from idp.login.errors import LoginFailed, LoginReason
from idp.store.models import PendingLogin

BROWSER_COOKIE = "__Host-idp-browser"


class PendingState(StrEnum):
    """Where a pending login is; the values are what the ``pending_logins.state`` column holds.
    States only move forward: PENDING → (CHOOSING →) AUTHENTICATED → COMPLETED, and PENDING or
    CHOOSING → CANCELLED."""

    PENDING = "pending"  # waiting for a login method to succeed
    CHOOSING = "choosing"  # the certificate could mean several HSA-IDs: the user picks one
    AUTHENTICATED = "authenticated"  # who logged in is known; the application is not answered
    COMPLETED = "completed"  # the application got its answer (repeatable for REPEAT_WINDOW)
    CANCELLED = "cancelled"  # the user gave up; the application is told so


# How long after completion the browser that completed a login may have its answer again. The
# answer can be lost after the login was committed: the node died before nginx had the
# response (nginx then retries the GET on the other node), or the page never loaded and the
# user reloads it. Short, because each repeat gives the application another answer to the
# same request; bounded by the pending login's own expiry, so no new column is needed.
REPEAT_WINDOW = dt.timedelta(seconds=60)


def new_token() -> str:
    """A fresh unguessable token (256 bits)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(slots=True)
class PendingLoginRecord:
    """One row of ``pending_logins`` as read or written by this module (no ORM object: the
    login's hot path builds plain rows). A step that moves the login on updates the record,
    so the caller holds what the row now says without reading it again."""

    id: str
    browser_binding: str
    protocol: str
    protocol_state: dict[str, Any]
    client_id: str
    client_name: str
    force_authn: bool
    state: str
    authentication: dict[str, Any] | None
    candidate_hsa_ids: list[str] | None
    created_at: dt.datetime
    expires_at: dt.datetime

    @classmethod
    def from_row(cls, row: Row[Any] | tuple[Any, ...]) -> PendingLoginRecord:
        return cls(*row)


_TABLE = PendingLogin.__table__
# Statements built once: SQLAlchemy's compiled cache then finds them on every login step.
_FIELD_NAMES = tuple(field.name for field in fields(PendingLoginRecord))
PENDING_LOGIN_COLUMNS = tuple(_TABLE.c[name] for name in _FIELD_NAMES)
_INSERT = insert(_TABLE)
_SELECT = select(*PENDING_LOGIN_COLUMNS).where(_TABLE.c.id == bindparam("reference"))


def create_pending_login(
    session: Transaction,
    *,
    browser_token: str,
    protocol: str,
    protocol_state: dict[str, Any],
    client_id: str,
    client_name: str,
    force_authn: bool,
    ttl_seconds: int,
) -> PendingLoginRecord:
    now = dt.datetime.now(dt.UTC)
    pending = PendingLoginRecord(
        id=new_token(),
        browser_binding=token_hash(browser_token),
        protocol=protocol,
        protocol_state=protocol_state,
        client_id=client_id,
        client_name=client_name,
        force_authn=force_authn,
        state=PendingState.PENDING,
        authentication=None,
        candidate_hsa_ids=None,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=ttl_seconds),
    )
    values = {name: getattr(pending, name) for name in _FIELD_NAMES}
    # Left out, not None: a JSON column stores None as JSON null, the ORM stored SQL NULL.
    session.execute(_INSERT, {name: value for name, value in values.items() if value is not None})
    return pending


def read_pending_login(session: Transaction, reference: str) -> PendingLoginRecord | None:
    """The pending login ``reference`` as stored, unchecked (None: no such login)."""
    if not reference:
        return None
    row = session.execute(_SELECT, {"reference": reference[:64]}).first()
    return None if row is None else PendingLoginRecord.from_row(row)


def load_pending_login(
    session: Transaction,
    reference: str,
    browser_token: str | None,
    *,
    expected_state: PendingState | tuple[PendingState, ...],
) -> PendingLoginRecord:
    """The pending login if it exists, is this browser's, in ``expected_state`` (one state or a
    tuple of them) and unexpired; else :class:`LoginFailed` saying which check failed.

    The checks run in that order, so another browser always gets ``other_browser`` and an
    expired login ``expired_login`` whatever its state. A completed login is returned only if
    ``expected_state`` names COMPLETED, and only within :data:`REPEAT_WINDOW` of completion
    (:func:`complete_pending_login` shortens its expiry to that)."""
    return check_pending_login(
        read_pending_login(session, reference), browser_token, expected_state=expected_state
    )


def check_pending_login(
    pending: PendingLoginRecord | None,
    browser_token: str | None,
    *,
    expected_state: PendingState | tuple[PendingState, ...],
) -> PendingLoginRecord:
    """:func:`load_pending_login`'s checks on a login already read (e.g. together with its
    order, :mod:`idp.methods.other_device.orders`), in the same order."""
    if pending is None:
        raise LoginFailed(LoginReason.UNKNOWN_LOGIN, "no such pending login")
    if not browser_token or not hmac.compare_digest(
        pending.browser_binding, token_hash(browser_token)
    ):
        raise LoginFailed(LoginReason.OTHER_BROWSER, "the login was started in another browser")
    ensure_unexpired(pending)
    allowed = (expected_state,) if isinstance(expected_state, PendingState) else expected_state
    if pending.state not in allowed:
        if pending.state == PendingState.COMPLETED:
            raise LoginFailed(LoginReason.LOGIN_ALREADY_COMPLETED, "this login is already finished")
        if pending.state == PendingState.CANCELLED:
            raise LoginFailed(LoginReason.LOGIN_CANCELLED, "the user cancelled this login")
        expected = tuple(str(state) for state in allowed)
        raise LoginFailed(LoginReason.LOGIN_WRONG_STEP, f"login is {pending.state}, not {expected}")
    return pending


def answerable_login(
    session: Transaction, reference: str, browser_token: str | None
) -> PendingLoginRecord | None:
    """The login a refused step belongs to, if this browser started it and its application is
    still owed an answer (neither completed nor cancelled); expired logins count, since the
    application must hear that the time ran out. None otherwise: then nobody is answered."""
    pending = read_pending_login(session, reference)
    if pending is None or not browser_token:
        return None
    if not hmac.compare_digest(pending.browser_binding, token_hash(browser_token)):
        return None
    return None if pending.state in (PendingState.COMPLETED, PendingState.CANCELLED) else pending


def cancel_pending_login(session: Transaction, pending: PendingLoginRecord) -> None:
    """End a login the user gave up on (once; it can then neither go on nor complete).

    ``pending`` must come from :func:`load_pending_login` in the same transaction."""
    _transition(session, pending, PendingState(pending.state), state=PendingState.CANCELLED)


def ensure_unexpired(pending: PendingLoginRecord) -> None:
    """Raise :class:`LoginFailed` (expired_login) if the pending login's time is up."""
    if stored_utc(pending.expires_at) < dt.datetime.now(dt.UTC):
        raise LoginFailed(LoginReason.EXPIRED_LOGIN, "the login took too long")


@functools.cache
def _transition_statement(names: tuple[str, ...]) -> Update:
    """The conditional UPDATE that sets the columns ``names``, built once per set of columns."""
    return (
        update(_TABLE)
        .where(_TABLE.c.id == bindparam("_id"), _TABLE.c.state == bindparam("_from_state"))
        .values({name: bindparam(f"_{name}") for name in names})
    )


def _transition(
    session: Transaction, pending: PendingLoginRecord, from_state: PendingState, **values: Any
) -> None:
    """Move ``pending`` from ``from_state`` with a conditional UPDATE, once, whatever races.

    ``pending`` must have been loaded in ``from_state`` (by :func:`load_pending_login`). Then the
    UPDATE matching means no other request moved it since (states only move forward), so the
    row now holds the loaded values plus ``values``: they are set on the record, not read back.
    """
    parameters = {f"_{name}": value for name, value in values.items()}
    parameters.update(_id=pending.id, _from_state=from_state)
    result = session.execute(_transition_statement(tuple(values)), parameters)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LoginFailed(LoginReason.LOGIN_ALREADY_COMPLETED, "another request finished this step")
    for name, value in values.items():
        setattr(pending, name, value)


def hand_over_pending_login(
    session: Transaction, reference: str, browser_token: str
) -> PendingLoginRecord:
    """Bind login ``reference``, if it still waits for a method and is unexpired, to
    ``browser_token`` instead of the browser it was started for; else :class:`LoginFailed`.
    Only for a proxy's retry of the very request that started it: that answer, and the cookie
    the login was bound to, never reached any browser."""
    pending = read_pending_login(session, reference)
    if pending is None:
        raise LoginFailed(LoginReason.UNKNOWN_LOGIN, "no such pending login")
    ensure_unexpired(pending)
    if pending.state != PendingState.PENDING:
        raise LoginFailed(LoginReason.LOGIN_WRONG_STEP, f"login is {pending.state}, not pending")
    _transition(session, pending, PendingState.PENDING, browser_binding=token_hash(browser_token))
    return pending


def mark_authenticated(
    session: Transaction,
    pending: PendingLoginRecord,
    authentications: list[Authentication],
) -> None:
    """Record who logged in. With several possible HSA-IDs the user must choose one next."""
    if len(authentications) == 1:
        _transition(
            session,
            pending,
            PendingState.PENDING,
            state=PendingState.AUTHENTICATED,
            authentication=authentications[0].to_json(),
            candidate_hsa_ids=None,
        )
    else:
        _transition(
            session,
            pending,
            PendingState.PENDING,
            state=PendingState.CHOOSING,
            authentication={"candidates": [a.to_json() for a in authentications]},
            candidate_hsa_ids=[a.hsa_id for a in authentications],
        )


def choose_hsa_id(session: Transaction, pending: PendingLoginRecord, hsa_id: str) -> None:
    """Pick one of the offered HSA-IDs; anything not offered is refused."""
    candidates = (pending.authentication or {}).get("candidates", [])
    chosen = [c for c in candidates if c["hsa_id"] == hsa_id]
    if not chosen:
        raise LoginFailed(
            LoginReason.HSA_ID_NOT_OFFERED, f"{hsa_id[:40]} was not one of the choices"
        )
    _transition(
        session,
        pending,
        PendingState.CHOOSING,
        state=PendingState.AUTHENTICATED,
        authentication=chosen[0],
        candidate_hsa_ids=None,
    )


def complete_pending_login(
    session: Transaction,
    pending: PendingLoginRecord,
    authenticated: Authentication | None = None,
) -> Authentication:
    """Finish a login exactly once and return who logged in: ``pending`` authenticated (in
    state AUTHENTICATED), or, given ``authenticated``, still waiting for a method that has just
    named this one HSA-ID; who logged in is then recorded by the same UPDATE that finishes.

    Of concurrent callers one succeeds; the others get :class:`LoginFailed`
    (``login_already_completed``). The completed login then expires within
    :data:`REPEAT_WINDOW`: until then :func:`repeat_completed_login` may answer the same
    browser again.
    """
    repeatable_until = min(stored_utc(pending.expires_at), dt.datetime.now(dt.UTC) + REPEAT_WINDOW)
    from_state, recorded = PendingState.AUTHENTICATED, {}
    authentication = authenticated or _authentication_of(pending)
    if authenticated is not None:
        from_state = PendingState.PENDING
        recorded = {"authentication": authenticated.to_json(), "candidate_hsa_ids": None}
    _transition(
        session,
        pending,
        from_state,
        state=PendingState.COMPLETED,
        expires_at=repeatable_until,
        **recorded,
    )
    return authentication


def repeat_completed_login(pending: PendingLoginRecord) -> Authentication:
    """Who logged in to a completed login, to answer the application again; changes nothing.

    Pass only a login that :func:`load_pending_login` returned in state COMPLETED: that
    makes it this browser's and within :data:`REPEAT_WINDOW` of its completion.
    """
    if pending.state != PendingState.COMPLETED:
        raise LoginFailed(LoginReason.LOGIN_WRONG_STEP, f"login is {pending.state}, not completed")
    return _authentication_of(pending)


def _authentication_of(pending: PendingLoginRecord) -> Authentication:
    return Authentication.from_json(dict(pending.authentication or {}))

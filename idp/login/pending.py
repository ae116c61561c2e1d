"""Pending logins: created when an application asks, finished once, only in the same browser.

The browser is identified by a random cookie token; only its SHA-256 is stored. A pending
login's reference travels in URLs, so the reference alone is worth nothing: every step also
checks the browser token.

A completed login stays readable by the browser that completed it for :data:`REPEAT_WINDOW`,
so that the answer to the application can be given again if the first one was lost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from enum import StrEnum
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from idp.authn import Authentication
from idp.db import stored_utc
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


def create_pending_login(
    session: Session,
    *,
    browser_token: str,
    protocol: str,
    protocol_state: dict[str, Any],
    client_id: str,
    client_name: str,
    force_authn: bool,
    ttl_seconds: int,
) -> PendingLogin:
    now = dt.datetime.now(dt.UTC)
    pending = PendingLogin(
        id=new_token(),
        browser_binding=token_hash(browser_token),
        protocol=protocol,
        protocol_state=protocol_state,
        client_id=client_id,
        client_name=client_name,
        force_authn=force_authn,
        state=PendingState.PENDING,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=ttl_seconds),
    )
    session.add(pending)
    session.flush()
    return pending


def load_pending_login(
    session: Session,
    reference: str,
    browser_token: str | None,
    *,
    expected_state: PendingState | tuple[PendingState, ...],
) -> PendingLogin:
    """The pending login if it exists, is this browser's, in ``expected_state`` (one state or a
    tuple of them) and unexpired; else :class:`LoginFailed` saying which check failed.

    The checks run in that order, so another browser always gets ``other_browser`` and an
    expired login ``expired_login`` whatever its state. A completed login is returned only if
    ``expected_state`` names COMPLETED, and only within :data:`REPEAT_WINDOW` of completion
    (:func:`complete_pending_login` shortens its expiry to that)."""
    pending = session.get(PendingLogin, reference[:64]) if reference else None
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
    session: Session, reference: str, browser_token: str | None
) -> PendingLogin | None:
    """The login a refused step belongs to, if this browser started it and its application is
    still owed an answer (neither completed nor cancelled); expired logins count, since the
    application must hear that the time ran out. None otherwise: then nobody is answered."""
    pending = session.get(PendingLogin, reference[:64]) if reference else None
    if pending is None or not browser_token:
        return None
    if not hmac.compare_digest(pending.browser_binding, token_hash(browser_token)):
        return None
    return None if pending.state in (PendingState.COMPLETED, PendingState.CANCELLED) else pending


def cancel_pending_login(session: Session, pending: PendingLogin) -> None:
    """End a login the user gave up on (once; it can then neither go on nor complete).

    ``pending`` must come from :func:`load_pending_login` in the same transaction."""
    _transition(session, pending, PendingState(pending.state), state=PendingState.CANCELLED)


def ensure_unexpired(pending: PendingLogin) -> None:
    """Raise :class:`LoginFailed` (expired_login) if the pending login's time is up."""
    if stored_utc(pending.expires_at) < dt.datetime.now(dt.UTC):
        raise LoginFailed(LoginReason.EXPIRED_LOGIN, "the login took too long")


def _transition(
    session: Session, pending: PendingLogin, from_state: PendingState, **values: Any
) -> None:
    """Move ``pending`` from ``from_state`` with a conditional UPDATE, once, whatever races.

    ``pending`` must have been loaded in ``from_state`` (by :func:`load_pending_login`). Then the
    UPDATE matching means no other request moved it since (states only move forward), so the
    row now holds the loaded values plus ``values``: they are set on the object as committed
    state. Expiring the object instead would cost a SELECT at the next attribute read (the
    audit event's ``client_id``, the protocol state) on every login step.
    """
    result = session.execute(
        update(PendingLogin)
        .where(PendingLogin.id == pending.id, PendingLogin.state == from_state)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LoginFailed(LoginReason.LOGIN_ALREADY_COMPLETED, "another request finished this step")
    for name, value in values.items():
        set_committed_value(pending, name, value)


def mark_authenticated(
    session: Session,
    pending: PendingLogin,
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


def choose_hsa_id(session: Session, pending: PendingLogin, hsa_id: str) -> None:
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


def complete_pending_login(session: Session, pending: PendingLogin) -> Authentication:
    """Finish an authenticated login exactly once and return who logged in.

    Of concurrent callers one succeeds; the others get :class:`LoginFailed`
    (``login_already_completed``). The completed login then expires within
    :data:`REPEAT_WINDOW`: until then :func:`repeat_completed_login` may answer the same
    browser again.
    """
    authentication = _authentication_of(pending)
    repeatable_until = min(stored_utc(pending.expires_at), dt.datetime.now(dt.UTC) + REPEAT_WINDOW)
    _transition(
        session,
        pending,
        PendingState.AUTHENTICATED,
        state=PendingState.COMPLETED,
        expires_at=repeatable_until,
    )
    return authentication


def repeat_completed_login(pending: PendingLogin) -> Authentication:
    """Who logged in to a completed login, to answer the application again; changes nothing.

    Pass only a login that :func:`load_pending_login` returned in state COMPLETED: that
    makes it this browser's and within :data:`REPEAT_WINDOW` of its completion.
    """
    if pending.state != PendingState.COMPLETED:
        raise LoginFailed(LoginReason.LOGIN_WRONG_STEP, f"login is {pending.state}, not completed")
    return _authentication_of(pending)


def _authentication_of(pending: PendingLogin) -> Authentication:
    return Authentication.from_json(dict(pending.authentication or {}))

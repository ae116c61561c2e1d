"""Single sign-on sessions: one per browser login, found by the hash of a cookie token."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from idp.authn import Authentication
from idp.db import stored_utc
from idp.directory.people import find_entry
from idp.login.pending import new_token, token_hash
from idp.store.models import SsoSession

SSO_COOKIE = "__Host-idp-sso"


def start_sso_session(session: Session, authentication: Authentication, ttl_seconds: int) -> str:
    """Create a session and return the cookie token (a new one every login: no fixation)."""
    token = new_token()
    now = dt.datetime.now(dt.UTC)
    session.add(
        SsoSession(
            token_hash=token_hash(token),
            hsa_id=authentication.hsa_id,
            authentication=authentication.to_json(),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=ttl_seconds),
        )
    )
    return token


def find_sso_session(session: Session, token: str | None) -> Authentication | None:
    """The session's authentication if it is live and its person is still active."""
    if not token:
        return None
    row = session.get(SsoSession, token_hash(token))
    if row is None:
        return None
    if stored_utc(row.expires_at) < dt.datetime.now(dt.UTC):
        return None
    entry = find_entry(session, row.hsa_id)
    if entry is None or not entry.active:
        # A person deactivated mid-session loses SSO at once.
        session.execute(delete(SsoSession).where(SsoSession.token_hash == row.token_hash))
        return None
    return Authentication.from_json(row.authentication)


def end_sso_session(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(SsoSession).where(SsoSession.token_hash == token_hash(token)))


def sso_session_key(authentication: Authentication) -> str:
    """A name for the SSO session that carries ``authentication`` (SAML Single Logout keeps its
    session participants under it, see :mod:`idp.saml.participants`).

    Derived from the login rather than the cookie token because a protocol answers a fresh
    login before the browser has the new session's cookie. Every login yields a new
    Authentication (its random ``login_id``), so the key names that one login's sessions.
    """
    canonical = json.dumps(authentication.to_json(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def sso_session_key_of_token(session: Session, token: str | None) -> str | None:
    """The :func:`sso_session_key` of the session named by a cookie token, live or not."""
    if not token:
        return None
    row = session.get(SsoSession, token_hash(token))
    if row is None:
        return None
    return sso_session_key(Authentication.from_json(row.authentication))


def end_sso_sessions_by_key(session: Session, hsa_id: str, key: str) -> int:
    """End the sessions of ``hsa_id`` whose :func:`sso_session_key` is ``key``; return how many."""
    rows = session.scalars(select(SsoSession).where(SsoSession.hsa_id == hsa_id)).all()
    ended = [
        row.token_hash
        for row in rows
        if sso_session_key(Authentication.from_json(row.authentication)) == key
    ]
    if ended:
        session.execute(delete(SsoSession).where(SsoSession.token_hash.in_(ended)))
    return len(ended)

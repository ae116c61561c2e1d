"""Single sign-on sessions: one per browser login, found by the hash of a cookie token."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from sqlalchemy import bindparam, delete, insert, select

from idp.authn import Authentication
from idp.db import Transaction, stored_utc
from idp.directory.people import is_active
from idp.login.pending import new_token, token_hash
from idp.store.models import SsoSession

SSO_COOKIE = "__Host-idp-sso"
_TABLE = SsoSession.__table__
# Statements built once (SQLAlchemy's compiled cache then finds them).
_INSERT = insert(_TABLE)
_BY_TOKEN = select(_TABLE.c.hsa_id, _TABLE.c.authentication, _TABLE.c.expires_at).where(
    _TABLE.c.token_hash == bindparam("token_hash")
)
_OF_PERSON = select(_TABLE.c.token_hash, _TABLE.c.authentication).where(
    _TABLE.c.hsa_id == bindparam("hsa_id")
)
_END = delete(_TABLE).where(_TABLE.c.token_hash == bindparam("token_hash"))
_END_SEVERAL = delete(_TABLE).where(
    _TABLE.c.token_hash.in_(bindparam("token_hashes", expanding=True))
)


def start_sso_session(
    session: Transaction, authentication: Authentication, ttl_seconds: int
) -> str:
    """Create a session and return the cookie token (a new one every login: no fixation)."""
    token = new_token()
    now = dt.datetime.now(dt.UTC)
    session.execute(
        _INSERT,
        {
            "token_hash": token_hash(token),
            "hsa_id": authentication.hsa_id,
            "authentication": authentication.to_json(),
            "created_at": now,
            "expires_at": now + dt.timedelta(seconds=ttl_seconds),
        },
    )
    return token


def find_sso_session(session: Transaction, token: str | None) -> Authentication | None:
    """The session's authentication if it is live and its person is still active."""
    if not token:
        return None
    hashed = token_hash(token)
    row = session.execute(_BY_TOKEN, {"token_hash": hashed}).first()
    if row is None:
        return None
    if stored_utc(row.expires_at) < dt.datetime.now(dt.UTC):
        return None
    if not is_active(session, row.hsa_id):
        # A person deactivated mid-session loses SSO at once.
        session.execute(_END, {"token_hash": hashed})
        return None
    return Authentication.from_json(row.authentication)


def end_sso_session(session: Transaction, token: str | None) -> None:
    if token:
        session.execute(_END, {"token_hash": token_hash(token)})


def sso_session_key(authentication: Authentication) -> str:
    """A name for the SSO session that carries ``authentication`` (SAML Single Logout keeps its
    session participants under it, see :mod:`idp.saml.participants`).

    Derived from the login rather than the cookie token because a protocol answers a fresh
    login before the browser has the new session's cookie. Every login yields a new
    Authentication (its random ``login_id``), so the key names that one login's sessions.
    """
    canonical = json.dumps(authentication.to_json(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def sso_session_key_of_token(session: Transaction, token: str | None) -> str | None:
    """The :func:`sso_session_key` of the session named by a cookie token, live or not."""
    if not token:
        return None
    row = session.execute(_BY_TOKEN, {"token_hash": token_hash(token)}).first()
    if row is None:
        return None
    return sso_session_key(Authentication.from_json(row.authentication))


def end_sso_sessions_by_key(session: Transaction, hsa_id: str, key: str) -> int:
    """End the sessions of ``hsa_id`` whose :func:`sso_session_key` is ``key``; return how many."""
    rows = session.execute(_OF_PERSON, {"hsa_id": hsa_id}).all()
    ended = [
        row.token_hash
        for row in rows
        if sso_session_key(Authentication.from_json(row.authentication)) == key
    ]
    if ended:
        session.execute(_END_SEVERAL, {"token_hashes": ended})
    return len(ended)

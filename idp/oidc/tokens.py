"""Access tokens: opaque random strings, stored as SHA-256 hashes, each traceable to its code."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass

from authlib.oauth2.rfc6749 import TokenMixin
from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from idp.authn import Authentication
from idp.db import stored_utc
from idp.oidc.clients import RegisteredClient, find_client
from idp.oidc.models import OidcAccessToken


def secret_hash(value: str) -> str:
    """The stored form of a code or token: its SHA-256, hex."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True, eq=False)
class IssuedToken(TokenMixin):
    """A stored access token with its client, detached from the database session."""

    client: RegisteredClient
    scope: str
    authentication: Authentication
    expires_at: int
    revoked: bool

    def check_client(self, client: RegisteredClient) -> bool:
        return client.client_id == self.client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, self.expires_at - int(time.time()))

    def is_expired(self) -> bool:
        return self.expires_at <= time.time()

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> Authentication:
        return self.authentication

    def get_client(self) -> RegisteredClient:
        return self.client


def save_access_token(
    session: Session,
    token: str,
    *,
    client_id: str,
    code_hash: str,
    scope: str,
    authentication: Authentication,
    ttl_seconds: int,
) -> None:
    now = dt.datetime.now(dt.UTC)
    session.add(
        OidcAccessToken(
            token_hash=secret_hash(token),
            client_id=client_id,
            code_hash=code_hash,
            scope=scope,
            hsa_id=authentication.hsa_id,
            authentication=authentication.to_json(),
            issued_at=now,
            expires_at=now + dt.timedelta(seconds=ttl_seconds),
            revoked=False,
        )
    )


def find_access_token(session: Session, token: str) -> IssuedToken | None:
    """The token if it was issued (expired and revoked ones too: the caller judges)."""
    if not token or len(token) > 200:
        return None
    row = session.get(OidcAccessToken, secret_hash(token))
    if row is None:
        return None
    client = find_client(session, row.client_id)
    if client is None:
        return None
    expires_at = stored_utc(row.expires_at)
    return IssuedToken(
        client=client,
        scope=row.scope,
        authentication=Authentication.from_json(row.authentication),
        expires_at=int(expires_at.timestamp()),
        revoked=row.revoked,
    )


def revoke_tokens_of_code(session: Session, code_hash: str) -> int:
    """Revoke every token bought with one code (RFC 6749 4.1.2: a code used twice)."""
    result = session.execute(
        update(OidcAccessToken).where(OidcAccessToken.code_hash == code_hash).values(revoked=True)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def purge_expired_tokens(session: Session) -> None:
    session.execute(
        delete(OidcAccessToken).where(OidcAccessToken.expires_at < dt.datetime.now(dt.UTC))
    )

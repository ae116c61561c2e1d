"""Authorization codes: single-use, short-lived, bound to one client and one redirect URI.

Redeeming is one conditional UPDATE (``used_at IS NULL``), so of two concurrent redemptions
exactly one wins. A code presented again, or by a client it was not issued to, is treated as
leaked: it is burnt and every token it bought is revoked (RFC 6749 section 4.1.2, RFC 9700).
The first attempt by an authenticated client uses the code up even if a later check fails
(PKCE verifier, redirect URI): a wrong verifier is what a stolen code looks like.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import Enum

from authlib.oidc.core import AuthorizationCodeMixin
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from idp.authn import Authentication
from idp.db import stored_utc
from idp.oidc.claims import amr_for
from idp.oidc.models import OidcAuthorizationCode
from idp.oidc.tokens import revoke_tokens_of_code, secret_hash

# Codes are kept past their expiry for as long as a token they bought can live, so that a
# late second redemption still finds them and revokes those tokens.
RETENTION = dt.timedelta(hours=2)


class CodeRefusal(Enum):
    """Why a code buys nothing; the value is the ``error_description`` the client sees."""

    UNKNOWN = "The code is unknown."
    REUSED = "The code was already used; the tokens it bought are revoked."
    OTHER_CLIENT = "The code was issued to another client; it is now void."
    EXPIRED = "The code has expired."


@dataclass(frozen=True, eq=False)
class IssuedCode(AuthorizationCodeMixin):
    """A redeemed code as authlib's grant and OpenID extension read it."""

    code_hash: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    acr: str
    authentication: Authentication

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.authentication.authn_instant

    def get_acr(self) -> str:
        return self.acr

    def get_amr(self) -> list[str]:
        return amr_for(self.authentication.method)


@dataclass(frozen=True)
class NewCode:
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    acr: str
    authentication: Authentication


def save_code(session: Session, code: str, new: NewCode, *, ttl_seconds: int) -> None:
    now = dt.datetime.now(dt.UTC)
    session.execute(
        delete(OidcAuthorizationCode).where(OidcAuthorizationCode.expires_at < now - RETENTION)
    )
    session.add(
        OidcAuthorizationCode(
            code_hash=secret_hash(code),
            client_id=new.client_id,
            redirect_uri=new.redirect_uri,
            scope=new.scope,
            nonce=new.nonce,
            code_challenge=new.code_challenge,
            code_challenge_method=new.code_challenge_method,
            acr=new.acr,
            hsa_id=new.authentication.hsa_id,
            authentication=new.authentication.to_json(),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=ttl_seconds),
            used_at=None,
        )
    )


def expire_unredeemed_codes(
    session: Session, client_id: str, authentication: Authentication
) -> int:
    """End the unredeemed codes ``client_id`` got for exactly ``authentication``; how many.

    For a login answered again (its first answer lost): only the newest code of a login can
    buy tokens, so the lost one is worthless to whoever might find it. A code already redeemed
    is left as it is: its tokens were bought before the repeat.
    """
    now = dt.datetime.now(dt.UTC)
    own = authentication.to_json()
    candidates = session.execute(
        select(OidcAuthorizationCode.code_hash, OidcAuthorizationCode.authentication).where(
            OidcAuthorizationCode.client_id == client_id,
            OidcAuthorizationCode.hsa_id == authentication.hsa_id,
            OidcAuthorizationCode.used_at.is_(None),
            OidcAuthorizationCode.expires_at > now,
        )
    ).all()
    hashes = [code_hash for code_hash, stored in candidates if stored == own]
    if hashes:
        session.execute(
            update(OidcAuthorizationCode)
            .where(OidcAuthorizationCode.code_hash.in_(hashes))
            .values(expires_at=now)
        )
    return len(hashes)


def redeem_code(session: Session, code: str, client_id: str) -> IssuedCode | CodeRefusal:
    """Use the code up for ``client_id``, or say why not (revoking what a leaked code bought).

    The caller must commit ``session`` even when a refusal is returned: burning and revoking
    are the point.
    """
    if not code or len(code) > 200:
        return CodeRefusal.UNKNOWN
    code_hash = secret_hash(code)
    row = session.get(OidcAuthorizationCode, code_hash)
    if row is None:
        return CodeRefusal.UNKNOWN
    now = dt.datetime.now(dt.UTC)
    if row.used_at is not None:
        revoke_tokens_of_code(session, code_hash)
        return CodeRefusal.REUSED
    claimed = session.execute(
        update(OidcAuthorizationCode)
        .where(
            OidcAuthorizationCode.code_hash == code_hash,
            OidcAuthorizationCode.used_at.is_(None),
        )
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        # Another request redeemed it between our read and our write.
        revoke_tokens_of_code(session, code_hash)
        return CodeRefusal.REUSED
    if row.client_id != client_id:
        return CodeRefusal.OTHER_CLIENT
    expires_at = stored_utc(row.expires_at)
    if expires_at <= now:
        return CodeRefusal.EXPIRED
    return IssuedCode(
        code_hash=code_hash,
        client_id=row.client_id,
        redirect_uri=row.redirect_uri,
        scope=row.scope,
        nonce=row.nonce,
        code_challenge=row.code_challenge,
        code_challenge_method=row.code_challenge_method,
        acr=row.acr,
        authentication=Authentication.from_json(row.authentication),
    )


def nonce_was_used(
    session: Session, client_id: str, nonce: str, *, except_for: Authentication | None = None
) -> bool:
    """Whether a code for ``client_id`` already carried ``nonce`` (a replayed request).

    ``except_for``: codes issued for exactly this authentication (the same login, answered
    again) do not count.
    """
    statement = select(OidcAuthorizationCode.authentication).where(
        OidcAuthorizationCode.client_id == client_id, OidcAuthorizationCode.nonce == nonce
    )
    if except_for is None:
        return session.scalar(statement.limit(1)) is not None
    own = except_for.to_json()
    return any(stored != own for stored in session.scalars(statement))

"""Tables of the OpenID Provider. Secrets are stored only as SHA-256 hashes: a database dump
yields no client secret, no usable code and no usable access token."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base


class OidcClient(Base):
    """A relying party registered by the operator (``idp oidc client add``)."""

    __tablename__ = "oidc_clients"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # "client_secret_basic" or "private_key_jwt"
    auth_method: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The client's public keys (a JWKS) for private_key_jwt.
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The user claims this client may receive (see idp.oidc.claims.USER_CLAIMS).
    claims: Mapped[list[str]] = mapped_column(JSON)
    id_token_alg: Mapped[str] = mapped_column(String(8), default="RS256")
    # Which LoA URI the client gets in "acr": the SAML attribute profile's name.
    acr_profile: Mapped[str] = mapped_column(String(32), default="sambi")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OidcAuthorizationCode(Base):
    """An issued authorization code. ``used_at`` is set once, by a conditional UPDATE, when the
    code is redeemed; the row stays until the tokens it bought have expired so that a second
    redemption can still be recognised and those tokens revoked."""

    __tablename__ = "oidc_authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128), index=True)
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(200))
    nonce: Mapped[str | None] = mapped_column(String(255), nullable=True)
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8))
    acr: Mapped[str] = mapped_column(String(200))
    hsa_id: Mapped[str] = mapped_column(String(31))
    authentication: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class OidcAccessToken(Base):
    """A bearer access token for the userinfo endpoint, traceable to the code that bought it."""

    __tablename__ = "oidc_access_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), index=True)
    scope: Mapped[str] = mapped_column(String(200))
    hsa_id: Mapped[str] = mapped_column(String(31))
    authentication: Mapped[dict[str, Any]] = mapped_column(JSON)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

"""Tables for transient state. Every row carries its own expiry so any node can judge it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base


class PendingLogin(Base):
    """A login that an application asked for and the user has not finished yet.

    ``state`` holds a :class:`idp.login.pending.PendingState` value: pending (→ choosing) →
    authenticated → completed, or to cancelled; each step is a conditional UPDATE so that a
    login is completed once, whatever races.
    """

    __tablename__ = "pending_logins"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    browser_binding: Mapped[str] = mapped_column(String(64))
    protocol: Mapped[str] = mapped_column(String(16))
    protocol_state: Mapped[dict[str, Any]] = mapped_column(JSON)
    client_id: Mapped[str] = mapped_column(String(1024))
    client_name: Mapped[str] = mapped_column(String(200), default="")
    force_authn: Mapped[bool] = mapped_column(default=False)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    # After authentication: the HSA-IDs the user may log in as, and the one chosen.
    authentication: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    candidate_hsa_ids: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class SsoSession(Base):
    """A browser's single sign-on session, found by the hash of its cookie token."""

    __tablename__ = "sso_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    hsa_id: Mapped[str] = mapped_column(String(31))
    authentication: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class SeenMessage(Base):
    """Message IDs already accepted from an issuer: a second arrival is a replay."""

    __tablename__ = "seen_messages"
    __table_args__ = (UniqueConstraint("issuer", "message_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    issuer: Mapped[str] = mapped_column(String(1024))
    message_id: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # The pending login an AuthnRequest started: the same browser sending the same request
    # again (a reload of the chooser it answered) gets that login's chooser, not a refusal.
    pending_login: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The request id it arrived under (a trusted proxy's X-Request-ID, the same on the proxy's
    # retry of that client request at another node), so that such a retry gets that login too.
    delivery: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditEvent(Base):
    """One security-relevant decision: who, towards which application, how, and why."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    event: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64), default="")
    hsa_id: Mapped[str] = mapped_column(String(64), default="")
    client_id: Mapped[str] = mapped_column(String(1024), default="")
    method: Mapped[str] = mapped_column(String(32), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class Order(Base):
    """A cross-device ("SITHS eID på annan enhet") order: the browser shows its QR code, the app
    scans it and signs ``data_to_sign``. Secrets (``qr_start_secret``, ``sign_token_hash``) never
    reach the browser."""

    __tablename__ = "orders"

    order_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    pending_login_id: Mapped[str] = mapped_column(String(64), index=True)
    browser_binding: Mapped[str] = mapped_column(String(64))
    qr_start_token: Mapped[str] = mapped_column(String(64), unique=True)
    qr_start_secret: Mapped[str] = mapped_column(String(64))
    auto_start_token: Mapped[str] = mapped_column(String(64), unique=True)
    data_to_sign: Mapped[str] = mapped_column(Text)  # base64
    user_visible_data: Mapped[str] = mapped_column(String(500))
    # Handed to the app that scanned first; only that app may sign or cancel.
    sign_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    hint_code: Mapped[str] = mapped_column(String(32), default="outstandingTransaction")
    failure_reason: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class RevocationCacheEntry(Base):
    """A good revocation answer, trusted until ``until`` (the answer's nextUpdate)."""

    __tablename__ = "revocation_cache"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class SamlSessionParticipant(Base):
    """An SP that was sent an assertion within an SSO session: what Single Logout needs to log
    it out (the NameID and SessionIndex it was given). One row per SP and session; a later
    login to the same SP in the same session replaces the subject.

    ``session_key`` names the SSO session (:func:`idp.login.sso.sso_session_key`). While a
    Single Logout runs, ``logout_run`` groups the session's rows and ``logout_state`` tracks
    each: ``queued`` → ``sent`` (``logout_request_id`` is the LogoutRequest sent to it) →
    ``done``/``failed``, or ``unsupported`` (no SLO endpoint in its metadata). The SP that
    asked for the logout is ``initiator``: ``logout_request_id``, ``logout_binding`` and
    ``logout_relay_state`` are then its request's, for the LogoutResponse it gets at the end.
    """

    __tablename__ = "saml_session_participants"
    __table_args__ = (UniqueConstraint("session_key", "sp_entity_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_key: Mapped[str] = mapped_column(String(64), index=True)
    hsa_id: Mapped[str] = mapped_column(String(64), default="")
    sp_entity_id: Mapped[str] = mapped_column(String(1024))
    name_id: Mapped[str] = mapped_column(String(1024), default="")
    name_id_format: Mapped[str] = mapped_column(String(256), default="")
    name_qualifier: Mapped[str] = mapped_column(String(1024), default="")
    sp_name_qualifier: Mapped[str] = mapped_column(String(1024), default="")
    session_index: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    logout_run: Mapped[str] = mapped_column(String(64), default="", index=True)
    logout_state: Mapped[str] = mapped_column(String(16), default="")
    logout_request_id: Mapped[str] = mapped_column(String(256), default="")
    logout_binding: Mapped[str] = mapped_column(String(128), default="")
    logout_relay_state: Mapped[str] = mapped_column(Text, default="")

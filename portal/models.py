"""The portal's tables.

An :class:`Order` is one employee's certificate-and-HSA-ID order and walks through the steps
of the routine (:data:`STEPS`); its ``version`` column makes every change optimistic: two EKU
administrators acting on the same order at once cannot both win. HSA-IDs and case numbers come
from :class:`Counter` rows and every HSA-ID ever handed out stays in :class:`AllocatedHsaId`,
so none is ever handed out twice. Mail goes through :class:`OutboxMail`; every state change
leaves an :class:`AuditEvent`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import Date, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base for every table the portal owns."""


# Roles kept in the portal, by HSA-ID.
IT_CONTACT = "it_contact"
EKU_ADMIN = "eku_admin"
ROLES = (IT_CONTACT, EKU_ADMIN)

# Order states, in the routine's order. The step numbers are the letter's.
REQUESTED = "requested"  # 1: the IT-kontaktperson has ordered
REGISTERED = "registered"  # 2-3: the EKU administrator registered an ärende (case number)
CONFIRMED = "confirmed"  # 4: order confirmed, HSA-ID allocated
FORWARDED = "forwarded"  # 5: forwarded to the IT-kontaktperson; recipient's link mailed
ISSUED = "issued"  # 6: the Göteborg certificate is on the card
IN_TRESERVA = "in_treserva"  # 7: the HSA-ID is on the Treserva account
PERMISSIONS_MOVED = "permissions_moved"  # 8: the ticket moved the permissions
STATES = (REQUESTED, REGISTERED, CONFIRMED, FORWARDED, ISSUED, IN_TRESERVA, PERMISSIONS_MOVED)


class RoleGrant(Base):
    """``hsa_id`` may act as ``role``; an IT contact acts for one provider organisation."""

    __tablename__ = "role_grants"
    __table_args__ = (UniqueConstraint("hsa_id", "role", "provider_org"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hsa_id: Mapped[str] = mapped_column(String(31), index=True)
    role: Mapped[str] = mapped_column(String(20))
    # The provider's 10-digit organisation number (IT contacts); "" for EKU administrators.
    provider_org: Mapped[str] = mapped_column(String(10), default="")
    name: Mapped[str] = mapped_column(String(200), default="")
    mail: Mapped[str] = mapped_column(String(320), default="")


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(String(20), index=True)
    provider_org: Mapped[str] = mapped_column(String(10), index=True)
    card_issuer: Mapped[str] = mapped_column(String(100))
    # One order per card, ever: the same card ordered twice is refused.
    card_number: Mapped[str] = mapped_column(String(32), unique=True)
    valid_to: Mapped[dt.date] = mapped_column(Date)
    given_name: Mapped[str] = mapped_column(String(200))
    surname: Mapped[str] = mapped_column(String(200))
    mail: Mapped[str] = mapped_column(String(320), index=True)
    # The employee's Windows account in Treserva, whose permissions move in step 8.
    windows_account: Mapped[str] = mapped_column(String(100), default="")
    ordered_by: Mapped[str] = mapped_column(String(31))
    ordered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    case_number: Mapped[str | None] = mapped_column(String(20), unique=True, default=None)
    hsa_id: Mapped[str | None] = mapped_column(String(31), unique=True, default=None)
    # Step 6: the link (only its SHA-256 is stored), its expiry and its one use.
    link_digest: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    link_expires_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )
    link_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    challenge: Mapped[str | None] = mapped_column(String(64), default=None)
    # The HSA-ID of the card's own organisation certificate, learnt when possession is proved.
    card_hsa_id: Mapped[str | None] = mapped_column(String(31), default=None)
    idp_directory_done: Mapped[bool] = mapped_column(default=False)
    scim_id: Mapped[str | None] = mapped_column(String(64), default=None)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    __mapper_args__: ClassVar[dict[str, Any]] = {"version_id_col": version}

    @property
    def display_name(self) -> str:
        return f"{self.given_name} {self.surname}"

    @property
    def step(self) -> int:
        """How many of the routine's eight steps are done."""
        return {
            REQUESTED: 1,
            REGISTERED: 3,
            CONFIRMED: 4,
            FORWARDED: 5,
            ISSUED: 6,
            IN_TRESERVA: 7,
            PERMISSIONS_MOVED: 8,
        }[self.state]


class Counter(Base):
    """A number that only grows (HSA-IDs, case numbers): never handed out twice."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


class AllocatedHsaId(Base):
    """Every HSA-ID the portal ever allocated; a row is never deleted, so never reused."""

    __tablename__ = "allocated_hsa_ids"

    hsa_id: Mapped[str] = mapped_column(String(31), primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    allocated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    """One state change: who (``actor``), what (``action``, ``detail``), when, on which order."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), default=None, index=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class OutboxMail(Base):
    """A mail to send. Written in the same transaction as the change it tells about, so it is
    never lost; sent (and retried) by :mod:`portal.mail`."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), default=None)
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")


class Ticket(Base):
    """A support ticket "move my permissions from the Windows login to the SITHS login"."""

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    state: Mapped[str] = mapped_column(String(10))  # open, done, failed
    raised_by: Mapped[str] = mapped_column(String(200))
    raised_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(Text, default="")

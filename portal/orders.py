"""Steps 1-5 of the routine as plain functions over the caller's session.

1. :func:`place_order` / :func:`place_orders` — the IT-kontaktperson orders (one, or a whole
   staff all-or-nothing);
2-3. :func:`register_case` — the EKU administrator registers an ärende and gets a case number;
4. :func:`confirm_order` — the order is confirmed and an HSA-ID under Göteborgs Stad allocated;
5. :func:`forward_order` — forwarded to the IT-kontaktperson, and the recipient's link mailed.

Every change is audited in the same transaction. The EKU actions take the order's ``version``
the administrator saw: if it has changed since (another administrator acted), or changes while
this one is written, :class:`~portal.refusals.Refused` ``concurrent_change`` is raised and the
caller's transaction must be rolled back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from idp.hsa_id import parse_hsa_id
from portal import audit, mail, mail_texts
from portal.config import GOTEBORGS_STAD, Settings, today
from portal.models import (
    CONFIRMED,
    FORWARDED,
    REGISTERED,
    REQUESTED,
    AllocatedHsaId,
    Counter,
    Order,
    RoleGrant,
)
from portal.refusals import Refused

# Who issued the card the certificate goes onto: Inera, or a private SITHS agent (ombud).
# The agents' names are invented.
CARD_ISSUERS = ("Inera AB", "SITHS-ombud Kortservice Väst AB", "SITHS-ombud Norra Kort AB")
# A SITHS card number in this model: 19 digits beginning 9752, as printed on the card (people
# type it with spaces). The card's PKCS#11 token carries it as its label.
_CARD_NUMBER = re.compile(r"9752[0-9]{15}")
_MAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_WINDOWS_ACCOUNT = re.compile(r"[A-Za-z0-9._-]+\\[A-Za-z0-9._-]+")
# The card's lifetime in the model: the Göteborg certificate cannot outlive it.
MAX_VALIDITY = dt.timedelta(days=2 * 365)
DEFAULT_SERIES = "U"


@dataclass(frozen=True)
class OrderInput:
    """One employee's order as typed (or read from one CSV row)."""

    card_issuer: str
    card_number: str
    valid_to: str
    given_name: str
    surname: str
    mail: str
    windows_account: str = ""


@dataclass(frozen=True)
class CheckedOrder:
    card_issuer: str
    card_number: str
    valid_to: dt.date
    given_name: str
    surname: str
    mail: str
    windows_account: str


def normalise_card_number(text: str) -> str:
    return re.sub(r"[\s-]", "", text)


def check_order(given: OrderInput, on: dt.date | None = None) -> CheckedOrder:
    """The order with its fields cleaned, or :class:`Refused` naming the first bad field.
    Checks the fields only; :func:`check_unique` checks them against the database."""
    for field in fields(given):
        if any(unicodedata.category(ch) == "Cc" for ch in getattr(given, field.name)):
            raise Refused("control_character", field.name)
    if given.card_issuer.strip() not in CARD_ISSUERS:
        raise Refused("card_issuer_unknown", given.card_issuer[:100])
    card_number = normalise_card_number(given.card_number)
    if not _CARD_NUMBER.fullmatch(card_number):
        raise Refused("card_number_format", given.card_number[:40])
    try:
        valid_to = dt.date.fromisoformat(given.valid_to.strip())
    except ValueError as exc:
        raise Refused("valid_to_format", given.valid_to[:40]) from exc
    day = on or today()
    if valid_to <= day:
        raise Refused("valid_to_past", valid_to.isoformat())
    if valid_to > day + MAX_VALIDITY:
        raise Refused("valid_to_too_late", valid_to.isoformat())
    given_name, surname = given.given_name.strip(), given.surname.strip()
    if not given_name or not surname:
        raise Refused("name_missing")
    address = given.mail.strip().lower()
    if not _MAIL.fullmatch(address):
        raise Refused("mail_format", given.mail[:100])
    windows_account = given.windows_account.strip()
    if windows_account and not _WINDOWS_ACCOUNT.fullmatch(windows_account):
        raise Refused("windows_account_format", windows_account[:100])
    return CheckedOrder(
        given.card_issuer.strip(),
        card_number,
        valid_to,
        given_name,
        surname,
        address,
        windows_account,
    )


def check_unique(session: Session, order: CheckedOrder) -> None:
    """Refuse a card ordered before, or a recipient who has (or is getting) an HSA-ID."""
    if session.scalar(select(Order.id).where(Order.card_number == order.card_number)):
        raise Refused("card_already_ordered", order.card_number)
    if session.scalar(select(Order.id).where(func.lower(Order.mail) == order.mail)):
        raise Refused("recipient_has_hsa_id", order.mail)


def _new_order(order: CheckedOrder, provider_org: str, actor: str) -> Order:
    now = dt.datetime.now(dt.UTC)
    return Order(
        state=REQUESTED,
        provider_org=provider_org,
        card_issuer=order.card_issuer,
        card_number=order.card_number,
        valid_to=order.valid_to,
        given_name=order.given_name,
        surname=order.surname,
        mail=order.mail,
        windows_account=order.windows_account,
        ordered_by=actor,
        ordered_at=now,
        updated_at=now,
    )


def place_order(session: Session, given: OrderInput, provider_org: str, actor: str) -> Order:
    """Step 1 for one employee; :class:`Refused` if any field or the uniqueness is wrong."""
    checked = check_order(given)
    check_unique(session, checked)
    order = _new_order(checked, provider_org, actor)
    session.add(order)
    session.flush()
    audit.record(session, actor, "order_placed", order_id=order.id, detail=order.card_number)
    return order


Progress = Callable[[int, int], None]


def place_orders(
    session: Session,
    rows: Sequence[tuple[int, OrderInput]],
    provider_org: str,
    actor: str,
    progress: Progress | None = None,
) -> tuple[list[Order], list[Refused]]:
    """Step 1 for many (line number, input) rows: all or nothing.

    Every bad row is reported (with its line number); if there is any, nothing is added and
    the orders list is empty. ``progress(done, total)`` is called as rows are checked and
    added (checking counts for the first half, adding for the second).
    """
    total = 2 * len(rows)
    errors: list[Refused] = []
    checked: list[CheckedOrder] = []
    cards: dict[str, int] = {}
    mails: dict[str, int] = {}
    known_cards = set(session.scalars(select(Order.card_number)))
    known_mails = set(session.scalars(select(func.lower(Order.mail))))
    for done, (line, given) in enumerate(rows, start=1):
        try:
            order = check_order(given)
            if order.card_number in known_cards:
                raise Refused("card_already_ordered", order.card_number)
            if order.card_number in cards:
                raise Refused("card_already_ordered", f"same as line {cards[order.card_number]}")
            if order.mail in known_mails:
                raise Refused("recipient_has_hsa_id", order.mail)
            if order.mail in mails:
                raise Refused("recipient_has_hsa_id", f"same as line {mails[order.mail]}")
            cards[order.card_number] = line
            mails[order.mail] = line
            checked.append(order)
        except Refused as refused:
            refused.line = line
            errors.append(refused)
        if progress is not None and done % 25 == 0:
            progress(done, total)
    if errors:
        return [], errors
    placed = []
    for done, order in enumerate(checked, start=len(rows) + 1):
        new = _new_order(order, provider_org, actor)
        session.add(new)
        placed.append(new)
        if progress is not None and done % 25 == 0:
            progress(done, total)
    session.flush()
    for new in placed:
        audit.record(
            session, actor, "order_placed", order_id=new.id, detail=f"csv {new.card_number}"
        )
    if progress is not None:
        progress(total, total)
    return placed, []


def _next(session: Session, counter: str) -> int:
    """The counter's next value. The UPDATE takes the row's write lock, so two allocators
    never see the same value; the value is never given back, even if the caller rolls back
    it is simply taken again, never twice by two committed transactions."""
    session.execute(update(Counter).where(Counter.name == counter).values(value=Counter.value + 1))
    return session.scalars(select(Counter.value).where(Counter.name == counter)).one()


def order_for_action(session: Session, order_id: int, version: int, state: str) -> Order:
    order = session.get(Order, order_id)
    if order is None:
        raise Refused("order_not_found", str(order_id))
    if order.version != version:
        raise Refused("concurrent_change", f"order {order_id} is at version {order.version}")
    if order.state != state:
        raise Refused("wrong_state", f"order {order_id} is {order.state}, not {state}")
    return order


def commit_step(session: Session, order: Order) -> None:
    order_id = order.id  # read now: after a failed flush the object cannot be read
    order.updated_at = dt.datetime.now(dt.UTC)
    try:
        session.flush()
    except StaleDataError as exc:
        raise Refused("concurrent_change", f"order {order_id} changed meanwhile") from exc


def register_case(session: Session, order_id: int, version: int, actor: str) -> Order:
    """Steps 2-3: register an ärende for the order; its case number is the receipt."""
    order = order_for_action(session, order_id, version, REQUESTED)
    order.state = REGISTERED
    order.case_number = f"EKU-{today().year}-{_next(session, 'case'):05d}"
    commit_step(session, order)
    audit.record(session, actor, "case_registered", order_id=order.id, detail=order.case_number)
    return order


def allocate_hsa_id(session: Session, order: Order, series: str = DEFAULT_SERIES) -> str:
    """A new HSA-ID under Göteborgs Stad in ``series`` (the local part's letters), never handed
    out before (and never again)."""
    hsa_id = parse_hsa_id(f"SE{GOTEBORGS_STAD}-{series}{_next(session, 'hsa_id'):06d}").value
    session.add(
        AllocatedHsaId(hsa_id=hsa_id, order_id=order.id, allocated_at=dt.datetime.now(dt.UTC))
    )
    return hsa_id


def confirm_order(
    session: Session, order_id: int, version: int, actor: str, series: str = DEFAULT_SERIES
) -> Order:
    """Step 4: the order is confirmed as received, with its allocated HSA-ID (in ``series``,
    ``Settings.hsa_id_series``)."""
    order = order_for_action(session, order_id, version, REGISTERED)
    order.state = CONFIRMED
    order.hsa_id = allocate_hsa_id(session, order, series)
    commit_step(session, order)
    audit.record(session, actor, "order_confirmed", order_id=order.id, detail=order.hsa_id)
    return order


def link_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def forward_order(
    session: Session, settings: Settings, order_id: int, version: int, actor: str
) -> Order:
    """Step 5: forward the confirmation to the provider's IT-kontaktpersoner, and mail the
    recipient the single-use link of step 6 (valid ``settings.link_lifetime_hours``)."""
    order = order_for_action(session, order_id, version, CONFIRMED)
    token = secrets.token_urlsafe(32)
    order.state = FORWARDED
    order.link_digest = link_digest(token)
    order.link_expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(
        hours=settings.link_lifetime_hours
    )
    commit_step(session, order)
    contacts = session.scalars(
        select(RoleGrant).where(RoleGrant.provider_org == order.provider_org, RoleGrant.mail != "")
    ).all()
    subject, body = mail_texts.forwarded_to_it_contact(order)
    for contact in contacts:
        mail.queue(session, contact.mail, subject, body, order_id=order.id)
    subject, body = mail_texts.link_to_recipient(
        order, f"{settings.base_url}/hamta/{token}", order.link_expires_at
    )
    mail.queue(session, order.mail, subject, body, order_id=order.id)
    audit.record(
        session,
        actor,
        "order_forwarded",
        order_id=order.id,
        detail=f"to {len(contacts)} IT contact(s); link to {order.mail}",
    )
    return order

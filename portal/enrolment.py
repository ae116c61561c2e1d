"""Step 6: the recipient follows the link, proves possession of the card, and the Göteborg
certificate is issued onto the same card.

The recipient's card software (:mod:`portal.card_client`) asks for a challenge, signs
:func:`data_to_sign` with the card's existing key, generates a new key pair *on the card* and
signs the same data with it, and sends both signatures, the card's certificate and the new
public key. :func:`issue` then checks, in this order, and refuses with a reason code at the
first failure: the link (known, unused, unexpired, at step 5), the challenge, the card number,
the card's certificate through the IdP's own SITHS validation (:class:`SithsValidator`: chain,
validity, key usage, revocation) accepting only the ordering provider's organisation, the
signature by that certificate's key, the person's name, that the card carries no Göteborgs Stad
certificate yet, that the card outlives the order's date, and the signature by the new key.
Only then is the certificate issued, the link spent and the order moved to step 6.

The certificate comes from :func:`siths_testkit.pki.issue_card_for_public_key`, the test PKI's
HSA-id CA: the portal models the CA here (a real portal hands the request to Inera's CA).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.db import stored_utc
from idp.hsa_id import InvalidHsaId, parse_hsa_id
from idp.methods.other_device.signature import (
    key_signature_is_valid,
    signature_is_valid,
)
from idp.siths.validation import CertificateRejected, SithsValidator, ValidatedCertificate
from portal import audit
from portal.config import GOTEBORGS_STAD, TIMEZONE
from portal.models import FORWARDED, ISSUED, Order
from portal.orders import link_digest
from portal.refusals import Refused
from siths_testkit.pki import TestPki, issue_card_for_public_key

MAX_PEM_CHARS = 16 * 1024


@dataclass(frozen=True)
class Submission:
    """What the card software sends to get the certificate."""

    challenge: str
    card_number: str
    certificate_pem: str
    algorithm: str
    signature: bytes
    card_hsa_ids: tuple[str, ...]
    public_key_pem: str
    new_key_algorithm: str
    new_key_signature: bytes


def data_to_sign(challenge: str, card_number: str) -> bytes:
    """The bytes both keys sign. Prefixed so a signature made here is useless elsewhere (and
    one made for a login is useless here)."""
    return f"goteborg-portal-enrolment:v1:{challenge}:{card_number}".encode()


def find_order(session: Session, token: str) -> Order | None:
    """The order of the link ``token``, whatever its state (for the audit trail)."""
    return session.scalars(select(Order).where(Order.link_digest == link_digest(token))).first()


def order_for_link(session: Session, token: str, now: dt.datetime | None = None) -> Order:
    """The order whose link ``token`` is, if the link may still be used."""
    order = find_order(session, token)
    if order is None:
        raise Refused("link_unknown")
    if order.link_used_at is not None:
        raise Refused("link_used", order.link_used_at.date().isoformat())
    expires = order.link_expires_at
    if expires is None or stored_utc(expires) <= (now or dt.datetime.now(dt.UTC)):
        raise Refused("link_expired")
    if order.state != FORWARDED:
        raise Refused("wrong_state", order.state)
    return order


def new_challenge(session: Session, token: str) -> tuple[Order, str]:
    """A fresh challenge for the link (replacing any earlier one)."""
    order = order_for_link(session, token)
    order.challenge = secrets.token_hex(32)
    return order, order.challenge


def _load_certificate(pem: str) -> x509.Certificate:
    if len(pem) > MAX_PEM_CHARS:
        raise Refused("card_certificate_refused", "certificate too large")
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except ValueError as exc:
        raise Refused("card_certificate_refused", "unreadable_certificate") from exc


def _load_new_key(pem: str) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """The new card key: RSA >= 2048 bits with e = 65537, or EC P-256/P-384/P-521."""
    if len(pem) > MAX_PEM_CHARS:
        raise Refused("new_key_not_proved", "key too large")
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except ValueError as exc:
        raise Refused("new_key_not_proved", "unreadable public key") from exc
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size >= 2048 and key.public_numbers().e == 65537:
            return key
    elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP256R1 | ec.SECP384R1 | ec.SECP521R1
    ):
        return key
    raise Refused("new_key_not_proved", "key type or size not accepted for a card")


def _same_name(order: Order, given_name: str, surname: str) -> bool:
    return (given_name.casefold(), surname.casefold()) == (
        order.given_name.casefold(),
        order.surname.casefold(),
    )


def _end_of_day(day: dt.date) -> dt.datetime:
    """The last second of ``day`` in Sweden, in UTC: "valid to" a date includes that date."""
    return dt.datetime.combine(day, dt.time(23, 59, 59), TIMEZONE).astimezone(dt.UTC)


ValidatorFor = Callable[[str], SithsValidator]


def issue(
    session: Session,
    pki: TestPki,
    validator_for: ValidatorFor,
    token: str,
    submission: Submission,
    now: dt.datetime | None = None,
) -> tuple[Order, x509.Certificate]:
    """Check everything (see the module docstring) and issue the Göteborg certificate for
    the new key; the order is at step 6 afterwards and the link spent. :class:`Refused` on
    the first failed check, with nothing issued; the challenge is spent either way, so the
    caller must commit the session even on refusal."""
    moment = now or dt.datetime.now(dt.UTC)
    order = order_for_link(session, token, moment)
    data = _spend_challenge(order, submission)
    validated, certificate = _check_card(order, submission, validator_for, data, moment)
    valid_to = _end_of_day(order.valid_to)
    if certificate.not_valid_after_utc < valid_to:
        raise Refused("card_expires_first", certificate.not_valid_after_utc.date().isoformat())
    new_key = _load_new_key(submission.public_key_pem)
    if not key_signature_is_valid(
        new_key, submission.new_key_algorithm, submission.new_key_signature, data
    ):
        raise Refused("new_key_not_proved")
    assert order.hsa_id is not None  # set at step 4, and the link exists only from step 5
    issued = issue_card_for_public_key(
        pki,
        new_key,
        hsa_id=order.hsa_id,
        given_name=order.given_name,
        surname=order.surname,
        not_after=valid_to,
    )
    _mark_issued(session, order, validated, issued, moment)
    return order, issued


def _spend_challenge(order: Order, submission: Submission) -> bytes:
    """Spend the order's challenge (whatever the outcome) and return what the card and the new
    key had to sign; :class:`Refused` unless the submission answers that challenge."""
    expected_challenge, order.challenge = order.challenge, None
    if not expected_challenge or not secrets.compare_digest(
        expected_challenge, submission.challenge
    ):
        raise Refused("no_challenge")
    return data_to_sign(expected_challenge, order.card_number)


def _check_card(
    order: Order,
    submission: Submission,
    validator_for: ValidatorFor,
    data: bytes,
    moment: dt.datetime,
) -> tuple[ValidatedCertificate, x509.Certificate]:
    """The card is the ordered one: its number, a SITHS certificate of the provider that the
    card's key signed ``data`` with, the ordered name, and no Göteborg HSA-ID on it yet."""
    if submission.card_number != order.card_number:
        raise Refused("card_mismatch", "card number")
    certificate = _load_certificate(submission.certificate_pem)
    try:
        validated = validator_for(order.provider_org).validate(certificate, now=moment)
    except CertificateRejected as rejected:
        raise Refused("card_certificate_refused", rejected.reason.value) from rejected
    if not signature_is_valid(certificate, submission.algorithm, submission.signature, data):
        raise Refused("card_not_proved")
    if not _same_name(order, validated.given_name, validated.surname):
        raise Refused("card_mismatch", "name")
    for hsa_id in submission.card_hsa_ids:
        try:
            organisation = parse_hsa_id(hsa_id).organisation_number
        except InvalidHsaId:
            continue
        if organisation == GOTEBORGS_STAD:
            raise Refused("card_has_goteborg", hsa_id)
    return validated, certificate


def _mark_issued(
    session: Session,
    order: Order,
    validated: ValidatedCertificate,
    issued: x509.Certificate,
    moment: dt.datetime,
) -> None:
    """The order at step 6, its link spent, and the audit event saying who got what."""
    order.state = ISSUED
    order.link_used_at = moment
    order.card_hsa_id = validated.hsa_id.value
    order.updated_at = moment
    session.flush()
    audit.record(
        session,
        f"{validated.hsa_id.value} ({order.display_name})",
        "certificate_issued",
        order_id=order.id,
        detail=f"{order.hsa_id} onto card {order.card_number}, serial {issued.serial_number:x}",
    )

"""Issuing SITHS-like HSA-ID authentication certificates ("cards").

:func:`issue_card` is the public way in for a card held in files: it validates the HSA-ID and
issues a good card under "SITHS e-id Person HSA-id 3 CA v1 TEST". :func:`issue_card_for_public_key`
does the same for a key that already exists elsewhere (on a PKCS#11 token) and only returns the
certificate. The deliberately bad cards of the test PKI come from :func:`_issue_card_unchecked`,
which writes whatever it is given. All three build the certificate with :func:`_card_certificate`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from siths_testkit.pki.issue import (
    AUTHENTICATION,
    CardKey,
    CardProfile,
    Issuer,
    SubjectKey,
    add_years,
    card_certificate,
    generate_key,
)
from siths_testkit.pki.layout import card_paths
from siths_testkit.pki.model import CardFiles, IssuedCard, TestPki
from siths_testkit.pki.names import email_address, organisation_name, person_name, validate_hsa_id
from siths_testkit.pki.revocation import (
    RevocationPointers,
    pointers_for,
    record_issued,
    revocation_extensions,
)
from siths_testkit.pki.storage import (
    load_certificate,
    load_private_key,
    write_certificates,
    write_p12,
    write_private_key,
)

__all__ = [
    "DEFAULT_P12_PASSWORD",
    "issue_card",
    "issue_card_for_public_key",
    "load_issuer",
    "to_utc",
]

# The PIN-like password of every test PKCS#12; test material only, so a well-known value.
DEFAULT_P12_PASSWORD = b"1234"

# Cards start an hour in the past so a freshly issued card works on a machine whose clock is a
# little behind; two years is SITHS's usual card lifetime.
_BACKDATE = dt.timedelta(hours=1)
_LIFETIME_YEARS = 2


def to_utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def load_issuer(cert: Path, key: Path) -> Issuer:
    """Read a CA certificate and its private key from PEM files."""
    return Issuer(certificate=load_certificate(cert), key=load_private_key(key))


def _require_text(value: str, what: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise ValueError(f"{what} must not be empty")
    return stripped


def issue_card(
    pki: TestPki,
    *,
    hsa_id: str,
    given_name: str,
    surname: str,
    out_dir: Path,
    org_name: str | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    p12_password: bytes = DEFAULT_P12_PASSWORD,
    ocsp_url: str | None = None,
    crl_url: str | None = None,
    key: CardKey | None = None,
    profile: CardProfile = AUTHENTICATION,
) -> IssuedCard:
    """Issue an HSA-ID authentication certificate and write it to ``out_dir``.

    Writes ``<hsa_id>.crt.pem``, ``<hsa_id>.key.pem`` (unencrypted PKCS#8, mode 0600) and
    ``<hsa_id>.p12`` (key, certificate and issuing CA, encrypted with ``p12_password``),
    replacing files of the same name. The subject is ``C=SE, O=<org_name>, givenName, surname,
    CN=<given> <surname>, serialNumber=<hsa_id>``; ``org_name`` defaults to the name of the
    HSA-ID's organisation number (see :data:`siths_testkit.pki.names.ORGANISATIONS`). Validity
    defaults to two years from an hour ago; naive datetimes are UTC.

    The certificate points at the PKI's OCSP responder (AIA) and CRL (distribution point);
    ``ocsp_url``/``crl_url`` replace those (``""`` leaves the extension out), which is how
    tests make cards whose revocation source misbehaves. The card is recorded as issued, so
    ``idp card revoke <HSA-ID>`` finds it.

    The card is good unless told otherwise: ``key`` (default a fresh RSA-2048 key) and
    ``profile`` (default :data:`~siths_testkit.pki.issue.AUTHENTICATION`) are how tests make a
    card with a weak key or a wrong key usage, extended key usage or CA flag, which the IdP must
    refuse.

    Raises ``ValueError`` (an :class:`idp.hsa_id.InvalidHsaId` for the HSA-ID) before anything
    is written if the HSA-ID, a name or the validity period is not acceptable.
    """
    person = _checked_person(hsa_id, given_name, surname, org_name)
    issuer = load_issuer(pki.hsa_ca_cert, pki.hsa_ca_key)
    card = _issue_card_unchecked(
        issuer,
        name=person.hsa_id,
        kind="good",
        serial_number=person.hsa_id,
        given_name=person.given_name,
        surname=person.surname,
        organisation=person.organisation,
        out_dir=out_dir,
        file_stem=person.hsa_id,
        not_before=not_before,
        not_after=not_after,
        p12_password=p12_password,
        pointers=pointers_for(pki.directory, ocsp_url=ocsp_url, crl_url=crl_url),
        key=key,
        profile=profile,
    )
    record_issued(pki.directory, [(load_certificate(card.cert), card.cert)])
    return card


def issue_card_for_public_key(
    pki: TestPki,
    public_key: SubjectKey,
    *,
    hsa_id: str,
    given_name: str,
    surname: str,
    org_name: str | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    issuer: Issuer | None = None,
    ocsp_url: str | None = None,
    crl_url: str | None = None,
) -> x509.Certificate:
    """Issue a card certificate for a key pair made elsewhere (e.g. on a PKCS#11 token).

    Subject, extensions, defaults and checks are exactly those of :func:`issue_card`; nothing
    is written to disk. ``public_key`` is an RSA or EC public key. ``issuer`` defaults to the
    PKI's HSA-id CA; tests pass another (the forged CA) to make a card the IdP must refuse,
    and ``not_before``/``not_after`` may both lie in the past to make an expired one.

    Raises ``ValueError`` (an :class:`idp.hsa_id.InvalidHsaId` for the HSA-ID) if the HSA-ID,
    a name or the validity period is not acceptable.
    """
    person = _checked_person(hsa_id, given_name, surname, org_name)
    certificate = _card_certificate(
        issuer or load_issuer(pki.hsa_ca_cert, pki.hsa_ca_key),
        public_key,
        serial_number=person.hsa_id,
        given_name=person.given_name,
        surname=person.surname,
        organisation=person.organisation,
        not_before=not_before,
        not_after=not_after,
        pointers=pointers_for(pki.directory, ocsp_url=ocsp_url, crl_url=crl_url),
    )
    if issuer is None:
        # Only the PKI's own CA's certificates are its to revoke.
        record_issued(pki.directory, [(certificate, None)])
    return certificate


@dataclass(frozen=True)
class _Person:
    hsa_id: str
    given_name: str
    surname: str
    organisation: str


def _checked_person(hsa_id: str, given_name: str, surname: str, org_name: str | None) -> _Person:
    # The checks every good card passes, done before any key or file is touched.
    parsed = validate_hsa_id(hsa_id)
    return _Person(
        hsa_id=parsed.value,
        given_name=_require_text(given_name, "given name"),
        surname=_require_text(surname, "surname"),
        organisation=_require_text(
            org_name if org_name is not None else organisation_name(parsed.organisation_number),
            "organisation name",
        ),
    )


def _card_certificate(
    issuer: Issuer,
    key: SubjectKey,
    *,
    serial_number: str | None,
    given_name: str,
    surname: str,
    organisation: str,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    profile: CardProfile = AUTHENTICATION,
    now: dt.datetime | None = None,
    pointers: RevocationPointers = RevocationPointers(),
) -> x509.Certificate:
    """The card certificate itself: validity defaults, subject, e-mail SAN, profile and the
    revocation pointers (AIA OCSP, CRL distribution point) that are not empty."""
    start = to_utc(not_before) if not_before else to_utc(now or dt.datetime.now(dt.UTC)) - _BACKDATE
    end = to_utc(not_after) if not_after else add_years(start, _LIFETIME_YEARS)
    if end <= start:
        raise ValueError(f"the card would expire ({end:%Y-%m-%d %H:%M}) before it is valid")
    return card_certificate(
        key,
        person_name(
            organisation=organisation,
            given_name=given_name,
            surname=surname,
            serial_number=serial_number,
        ),
        issuer,
        email=email_address(given_name, surname),
        profile=profile,
        not_before=start,
        not_after=end,
        extensions=revocation_extensions(pointers),
    )


def _issue_card_unchecked(
    issuer: Issuer,
    *,
    name: str,
    kind: str,
    serial_number: str | None,
    given_name: str,
    surname: str,
    organisation: str,
    out_dir: Path,
    file_stem: str,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    profile: CardProfile = AUTHENTICATION,
    p12_password: bytes = DEFAULT_P12_PASSWORD,
    extra_certs: Sequence[str] = (),
    now: dt.datetime | None = None,
    key: CardKey | None = None,
    pointers: RevocationPointers = RevocationPointers(),
) -> CardFiles:
    """Issue a card certificate exactly as described, without checking the HSA-ID.

    ``serial_number`` goes into the subject verbatim (``None`` leaves it out). Only for the
    test PKI's deliberately bad cards; everyone else uses :func:`issue_card`. ``key`` lets
    the caller supply a pre-generated key (a fresh one is made otherwise).
    """
    key = key or generate_key()
    certificate = _card_certificate(
        issuer,
        key,
        serial_number=serial_number,
        given_name=given_name,
        surname=surname,
        organisation=organisation,
        not_before=not_before,
        not_after=not_after,
        profile=profile,
        now=now,
        pointers=pointers,
    )
    cert_path, key_path, p12_path = _write_card_files(
        card_paths(out_dir, file_stem),
        key,
        certificate,
        issuer,
        friendly_name=f"{given_name} {surname} ({serial_number or name})",
        p12_password=p12_password,
    )
    return CardFiles(
        name=name,
        hsa_id=serial_number,
        given_name=given_name,
        surname=surname,
        cert=cert_path,
        key=key_path,
        p12=p12_path,
        kind=kind,
        extra_certs=list(extra_certs),
    )


def _write_card_files(
    paths: tuple[Path, Path, Path],
    key: CardKey,
    certificate: x509.Certificate,
    issuer: Issuer,
    *,
    friendly_name: str,
    p12_password: bytes,
) -> tuple[Path, Path, Path]:
    """Write a card's certificate (PEM), key (PKCS#8, mode 0600) and PKCS#12 (key, certificate
    and issuing CA) to ``paths``, as :func:`~siths_testkit.pki.layout.card_paths` names them."""
    cert_path, key_path, p12_path = paths
    write_private_key(key_path, key)
    write_certificates(cert_path, [certificate])
    write_p12(
        p12_path,
        friendly_name=friendly_name,
        key=key,
        certificate=certificate,
        ca_certificates=[issuer.certificate],
        password=p12_password,
    )
    return paths

"""Issuing SITHS-like HSA-ID authentication certificates ("cards") as files.

:func:`issue_card` is the public way in: it validates the HSA-ID and issues a good card under
"SITHS e-id Person HSA-id 3 CA v1 TEST". The deliberately bad cards of the test PKI come from
:func:`_issue_card_unchecked`, which writes whatever it is given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from idp.pki.issue import (
    AUTHENTICATION,
    CardProfile,
    Issuer,
    add_years,
    card_certificate,
    generate_key,
)
from idp.pki.layout import card_paths
from idp.pki.model import CardFiles, IssuedCard, TestPki
from idp.pki.names import email_address, organisation_name, person_name, validate_hsa_id
from idp.pki.storage import (
    load_certificate,
    load_private_key,
    write_certificates,
    write_p12,
    write_private_key,
)

__all__ = ["DEFAULT_P12_PASSWORD", "issue_card", "load_issuer", "to_utc"]

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
) -> IssuedCard:
    """Issue a good HSA-ID authentication certificate and write it to ``out_dir``.

    Writes ``<hsa_id>.crt.pem``, ``<hsa_id>.key.pem`` (unencrypted PKCS#8, mode 0600) and
    ``<hsa_id>.p12`` (key, certificate and issuing CA, encrypted with ``p12_password``),
    replacing files of the same name. The subject is ``C=SE, O=<org_name>, givenName, surname,
    CN=<given> <surname>, serialNumber=<hsa_id>``; ``org_name`` defaults to the name of the
    HSA-ID's organisation number (see :data:`idp.pki.names.ORGANISATIONS`). Validity defaults to
    two years from an hour ago; naive datetimes are UTC.

    Raises ``ValueError`` (an :class:`idp.hsa_id.InvalidHsaId` for the HSA-ID) before anything
    is written if the HSA-ID, a name or the validity period is not acceptable.
    """
    parsed = validate_hsa_id(hsa_id)
    given_name = _require_text(given_name, "given name")
    surname = _require_text(surname, "surname")
    organisation = _require_text(
        org_name if org_name is not None else organisation_name(parsed.organisation_number),
        "organisation name",
    )
    issuer = load_issuer(pki.hsa_ca_cert, pki.hsa_ca_key)
    return _issue_card_unchecked(
        issuer,
        name=parsed.value,
        kind="good",
        serial_number=parsed.value,
        given_name=given_name,
        surname=surname,
        organisation=organisation,
        out_dir=out_dir,
        file_stem=parsed.value,
        not_before=not_before,
        not_after=not_after,
        p12_password=p12_password,
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
    key: RSAPrivateKey | None = None,
) -> CardFiles:
    """Issue a card certificate exactly as described, without checking the HSA-ID.

    ``serial_number`` goes into the subject verbatim (``None`` leaves it out). Only for the
    test PKI's deliberately bad cards; everyone else uses :func:`issue_card`. ``key`` lets
    the caller supply a pre-generated key (a fresh one is made otherwise).
    """
    start = to_utc(not_before) if not_before else to_utc(now or dt.datetime.now(dt.UTC)) - _BACKDATE
    end = to_utc(not_after) if not_after else add_years(start, _LIFETIME_YEARS)
    if end <= start:
        raise ValueError(f"the card would expire ({end:%Y-%m-%d %H:%M}) before it is valid")
    key = key or generate_key()
    certificate = card_certificate(
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
    )
    cert_path, key_path, p12_path = card_paths(out_dir, file_stem)
    write_private_key(key_path, key)
    write_certificates(cert_path, [certificate])
    write_p12(
        p12_path,
        friendly_name=f"{given_name} {surname} ({serial_number or name})",
        key=key,
        certificate=certificate,
        ca_certificates=[issuer.certificate],
        password=p12_password,
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

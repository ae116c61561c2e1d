"""Distinguished names, object identifiers and organisations of the test PKI.

Everything here mirrors how SITHS names things, so code that reads a real SITHS certificate reads
a test one the same way: CA names are ``C=SE, O=Inera AB, CN=…`` (test CAs carry "TEST"), and a
card's HSA-ID is the subject ``serialNumber`` (2.5.4.5).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from types import MappingProxyType

from cryptography import x509
from cryptography.x509.oid import NameOID

from idp.hsa_id import HsaId, InvalidHsaId, parse_hsa_id

__all__ = [
    "HSA_ID_CA_COMMON_NAME",
    "IDP_NEXT_SIGNING_COMMON_NAME",
    "IDP_SIGNING_COMMON_NAME",
    "MS_SMARTCARD_LOGIN",
    "ORGANISATIONS",
    "OWN_ORGANISATION",
    "PERSON_ID_CA_COMMON_NAME",
    "ROOT_CA_COMMON_NAME",
    "SP_SIGNING_COMMON_NAME",
    "TLS_CA_COMMON_NAME",
    "InvalidHsaId",
    "ca_name",
    "email_address",
    "organisation_name",
    "own_name",
    "person_name",
    "validate_hsa_id",
]

ROOT_CA_COMMON_NAME = "SITHS e-id Root CA v2 TEST"
HSA_ID_CA_COMMON_NAME = "SITHS e-id Person HSA-id 3 CA v1 TEST"
PERSON_ID_CA_COMMON_NAME = "SITHS e-id Person ID 3 CA v1 TEST"

TLS_CA_COMMON_NAME = "Åtkomsttjänsten Test TLS CA"
IDP_SIGNING_COMMON_NAME = "Göteborgs Stads Åtkomsttjänst SAML signing (TEST)"
IDP_NEXT_SIGNING_COMMON_NAME = "Göteborgs Stads Åtkomsttjänst SAML signing, next key (TEST)"
SP_SIGNING_COMMON_NAME = "Treserva (mock) SAML SP (TEST)"

# Microsoft "Smart Card Logon": real SITHS authentication certificates carry it next to
# clientAuth so the same card can log on to Windows; the IdP ignores it.
MS_SMARTCARD_LOGIN = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.2")

OWN_ORGANISATION = "Göteborgs Stad"

# Organisation number → name. Göteborgs Stad is real (212000-1355); the other two are invented:
# a private care provider the IdP accepts and an organisation it does not.
ORGANISATIONS: Mapping[str, str] = MappingProxyType(
    {
        "2120001355": OWN_ORGANISATION,
        "5567000010": "Omsorgsbolaget Väst AB",
        "5590000001": "Annan Region AB",
    }
)


def validate_hsa_id(text: str) -> HsaId:
    """Return the parsed HSA-ID or raise :class:`InvalidHsaId` (a ``ValueError``).

    The rule is the project's one definition in :mod:`idp.hsa_id` (``SE`` + 10 digits + ``-`` +
    one or more of ``[A-Za-z0-9]``, at most 31 characters), so the PKI cannot issue a "good"
    card that the IdP would then call malformed.
    """
    return parse_hsa_id(text)


def organisation_name(organisation_number: str) -> str:
    """The name used in ``O=`` for an organisation number: the table above, else a placeholder."""
    return ORGANISATIONS.get(organisation_number, f"Organisation {organisation_number}")


def ca_name(common_name: str) -> x509.Name:
    """``C=SE, O=Inera AB, CN=<common_name>``, the shape of every SITHS CA name."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Inera AB"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def own_name(common_name: str) -> x509.Name:
    """``C=SE, O=Göteborgs Stad, CN=<common_name>``: the service's own (non-SITHS) certificates."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, OWN_ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def person_name(
    *, organisation: str, given_name: str, surname: str, serial_number: str | None
) -> x509.Name:
    """Subject of a card certificate: ``C=SE, O, givenName, surname, CN, serialNumber``.

    ``serial_number`` is written verbatim (it is how the bad cards get a missing or malformed
    HSA-ID); callers issuing good cards validate it first.
    """
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        x509.NameAttribute(NameOID.GIVEN_NAME, given_name),
        x509.NameAttribute(NameOID.SURNAME, surname),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{given_name} {surname}"),
    ]
    if serial_number is not None:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
    return x509.Name(attributes)


def _ascii_fold(text: str) -> str:
    # NFKD splits "å" into "a" + a combining ring, which the ASCII encoding then drops;
    # anything else outside [a-z0-9] becomes "-" so the result is always a valid local part.
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")


def email_address(given_name: str, surname: str) -> str:
    """``<given>.<surname>@example.invalid``, lowercased and ASCII-folded (å→a, ö→o).

    ``.invalid`` is reserved (RFC 2606), so no mail can ever reach a real person.
    """
    parts = [part for part in (_ascii_fold(given_name), _ascii_fold(surname)) if part]
    local = ".".join(parts) or "person"
    return f"{local}@example.invalid"

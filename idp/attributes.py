"""Attribute profiles: which attributes an application gets, named as its federation names them.

Two profiles exist (see DESIGN.md): Sambi, used in Swedish health and social care, and the
Swedish eID Framework (``urn:oid:`` names). An SP gets the attributes it requests in its
metadata (``RequestedAttribute``) plus those of an attribute set it declares as an entity
category, and never more.

Protocol-neutral tables: SAML (:mod:`idp.saml`) releases them as Attributes, OIDC
(:mod:`idp.oidc.claims`) maps them to claims, and federation checks SP metadata against them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from saml2.saml import NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT

from idp.authn import Authentication

NAME_FORMAT_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
HSAID_01_ENTITY_CATEGORY = "http://id.swedenconnect.se/ap/1.0/hsaid-01"

Getter = Callable[[Authentication], str]


@dataclass(frozen=True)
class ReleasedAttribute:
    name: str
    friendly_name: str
    value: Getter


@dataclass(frozen=True)
class AttributeProfile:
    name: str
    loa: str
    name_id_format: str
    attributes: tuple[ReleasedAttribute, ...]

    def by_name(self) -> dict[str, ReleasedAttribute]:
        return {attribute.name: attribute for attribute in self.attributes}


SAMBI = AttributeProfile(
    name="sambi",
    loa="http://id.sambi.se/loa/loa3",
    name_id_format=NAMEID_FORMAT_TRANSIENT,
    attributes=(
        ReleasedAttribute(
            "http://sambi.se/attributes/1/employeeHsaId", "employeeHsaId", lambda a: a.hsa_id
        ),
        ReleasedAttribute(
            "http://sambi.se/attributes/1/givenName", "givenName", lambda a: a.given_name
        ),
        ReleasedAttribute("http://sambi.se/attributes/1/surname", "surname", lambda a: a.surname),
    ),
)

SWEDISH_EID = AttributeProfile(
    name="swedish-eid",
    loa="http://id.elegnamnden.se/loa/1.0/loa3",
    name_id_format=NAMEID_FORMAT_PERSISTENT,
    attributes=(
        ReleasedAttribute("urn:oid:1.2.752.29.6.2.1", "employeeHsaId", lambda a: a.hsa_id),
        ReleasedAttribute(
            "urn:oid:2.16.840.1.113730.3.1.241", "displayName", lambda a: a.display_name
        ),
        ReleasedAttribute("urn:oid:2.5.4.42", "givenName", lambda a: a.given_name),
        ReleasedAttribute("urn:oid:2.5.4.4", "sn", lambda a: a.surname),
        ReleasedAttribute("urn:oid:0.9.2342.19200300.100.1.3", "mail", lambda a: a.mail),
        ReleasedAttribute("urn:oid:2.5.4.10", "organizationName", lambda a: a.organisation),
    ),
)

# DIGG-AP-HSAid-01: the attribute set an SP gets by declaring the entity category.
HSAID_01_ATTRIBUTES = (
    "urn:oid:2.5.4.4",
    "urn:oid:2.5.4.42",
    "urn:oid:2.16.840.1.113730.3.1.241",
    "urn:oid:1.2.752.29.6.2.1",
)

PROFILES = (SAMBI, SWEDISH_EID)


def choose_profile(
    requested_names: Iterable[str], entity_categories: Iterable[str]
) -> AttributeProfile:
    """The Swedish eID profile for SPs that ask in its terms; Sambi otherwise."""
    if HSAID_01_ENTITY_CATEGORY in set(entity_categories):
        return SWEDISH_EID
    names = set(requested_names)
    if names and names <= set(SWEDISH_EID.by_name()):
        return SWEDISH_EID
    return SAMBI


def released_names(
    profile: AttributeProfile, requested_names: Iterable[str], entity_categories: Iterable[str]
) -> list[str]:
    """The attribute names the SP will receive, in the profile's order."""
    wanted = set(requested_names)
    if profile is SWEDISH_EID and HSAID_01_ENTITY_CATEGORY in set(entity_categories):
        wanted |= set(HSAID_01_ATTRIBUTES)
    return [attribute.name for attribute in profile.attributes if attribute.name in wanted]


def friendly_names() -> dict[str, str]:
    return {a.name: a.friendly_name for profile in PROFILES for a in profile.attributes}

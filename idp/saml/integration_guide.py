"""What an integrator needs beside the metadata, built from the same tables the IdP acts on.

The page ``/saml/integration`` and the repository's ``docs/INTEGRATION.md`` (``idp metadata
integration-guide``) are both rendered from :func:`integration_guide`: attribute names from
:mod:`idp.attributes`, LoA values from :mod:`idp.saml.loa`, statuses from
:mod:`idp.saml.statuses`. So what they say is what the IdP does.
"""

from __future__ import annotations

from dataclasses import dataclass

import jinja2
from saml2.saml import (
    NAMEID_FORMAT_PERSISTENT,
    NAMEID_FORMAT_TRANSIENT,
    NAMEID_FORMAT_UNSPECIFIED,
)

from idp import attributes
from idp.saml import encryption, loa, statuses

# The entityID the repository's copy (docs/INTEGRATION.md) is written for.
DOCUMENTED_ENTITY_ID = "https://idp.example.org/saml/metadata"

# Shibboleth SP's stock attribute-map.xml knows neither the Sambi URIs nor the HSA-ID OID.
_SHIBBOLETH_IDS = {"employeeHsaId": "employeeHsaId", "sn": "sn", "surname": "sn"}


@dataclass(frozen=True)
class ProfileGuide:
    name: str
    title: str
    chosen_when: str
    loa_values: tuple[str, ...]
    default_name_id_format: str
    attributes: tuple[tuple[str, str], ...]  # (Name, FriendlyName)


@dataclass(frozen=True)
class StatusGuide:
    top: str
    second: str
    when: str


@dataclass(frozen=True)
class IntegrationGuide:
    entity_id: str
    metadata_url: str
    profiles: tuple[ProfileGuide, ...]
    name_id_formats: tuple[tuple[str, str], ...]  # (format, what it gives)
    comparisons: tuple[str, ...]
    statuses: tuple[StatusGuide, ...]
    encryption_methods: tuple[tuple[str, str], ...]  # (Algorithm, when it is used)
    encryption_refused: tuple[str, ...]
    encryption_min_rsa_bits: int
    encryption_key_descriptor: str
    shibboleth_attribute_map: str
    shibboleth_requested_attributes: str
    simplesamlphp_authsource: str
    python3_saml_settings: str


def _profile_guides() -> tuple[ProfileGuide, ...]:
    chosen = {
        attributes.SAMBI.name: (
            "Sambi (health and social care)",
            "SPs that request Sambi names or nothing (the default)",
        ),
        attributes.SWEDISH_EID.name: (
            "Swedish eID Framework",
            "SPs whose RequestedAttributes are all urn:oid names of this profile, or that "
            f"declare the entity category {attributes.HSAID_01_ENTITY_CATEGORY}",
        ),
    }
    guides = []
    for profile in attributes.PROFILES:
        title, when = chosen[profile.name]
        ladder = next(ladder for ladder in loa.LADDERS if profile.loa in ladder)
        guides.append(
            ProfileGuide(
                name=profile.name,
                title=title,
                chosen_when=when,
                loa_values=ladder,
                default_name_id_format=profile.name_id_format,
                attributes=tuple((a.name, a.friendly_name) for a in profile.attributes),
            )
        )
    return tuple(guides)


_STATUS_WHEN = {
    statuses.NO_PASSIVE.reason: "IsPassive was set and the browser has no SSO session",
    statuses.NO_AUTHN_CONTEXT.reason: "RequestedAuthnContext asks for what the IdP cannot do",
    statuses.INVALID_NAME_ID_POLICY.reason: "NameIDPolicy asks for a format other than "
    "transient, persistent or unspecified, or an SPNameQualifier other than the SP's entityID",
    statuses.AUTHN_FAILED.reason: "the login failed (card refused, person unknown, time ran "
    "out); sent when the user presses 'Tillbaka till tjänsten' on the IdP's page",
    statuses.CANCELLED.reason: "the user cancelled (chooser, QR page or choice of tjänste-id)",
}


def _status_guides() -> tuple[StatusGuide, ...]:
    # Every status the IdP can answer with, in the order of the table it answers from.
    answered = dict.fromkeys(s for s in statuses.SAML_STATUS.values() if s is not None)
    return tuple(
        StatusGuide(status.top, status.second, _STATUS_WHEN[status.reason]) for status in answered
    )


_DIGEST_NAMES = {
    encryption.SHA1: "SHA-1",
    encryption.SHA256: "SHA-256",
    encryption.SHA384: "SHA-384",
    encryption.SHA512: "SHA-512",
}


def _encryption_methods() -> tuple[tuple[str, str], ...]:
    return (
        (encryption.AES256_GCM, "content encryption: the default"),
        (encryption.AES128_GCM, "content encryption, if your metadata names it first"),
        (
            encryption.RSA_OAEP_MGF1P,
            "key transport: the default, OAEP digest SHA-1 unless your ds:DigestMethod says "
            "SHA-256, SHA-384 or SHA-512",
        ),
        (
            encryption.RSA_OAEP,
            "key transport, if your metadata names it first: OAEP digest "
            f"{_DIGEST_NAMES[encryption.DEFAULT_RSA_OAEP_DIGEST]} and MGF1 with SHA-1 unless "
            "your ds:DigestMethod and xenc11:MGF say otherwise",
        ),
    )


def _encryption_key_descriptor() -> str:
    return (
        '<md:KeyDescriptor use="encryption">\n'
        "  <ds:KeyInfo><ds:X509Data><ds:X509Certificate>…</ds:X509Certificate>"
        "</ds:X509Data></ds:KeyInfo>\n"
        f'  <md:EncryptionMethod Algorithm="{encryption.AES256_GCM}"/>\n'
        f'  <md:EncryptionMethod Algorithm="{encryption.RSA_OAEP_MGF1P}">\n'
        f'    <ds:DigestMethod Algorithm="{encryption.SHA256}"/>\n'
        "  </md:EncryptionMethod>\n"
        "</md:KeyDescriptor>"
    )


def _all_attributes() -> list[tuple[str, str]]:
    return [(a.name, a.friendly_name) for p in attributes.PROFILES for a in p.attributes]


def _shibboleth_attribute_map() -> str:
    lines = [
        f'<Attribute name="{name}" id="{_SHIBBOLETH_IDS.get(friendly, friendly)}"/>'
        for name, friendly in _all_attributes()
    ]
    return "\n".join(lines)


def _requested_attributes(profile: attributes.AttributeProfile) -> str:
    lines = ['<md:AttributeConsumingService index="1">']
    lines.append('  <md:ServiceName xml:lang="sv">Min tjänst</md:ServiceName>')
    for attribute in profile.attributes:
        lines.append(
            f'  <md:RequestedAttribute Name="{attribute.name}" '
            f'NameFormat="{attributes.NAME_FORMAT_URI}" isRequired="true"/>'
        )
    lines.append("</md:AttributeConsumingService>")
    return "\n".join(lines)


def _simplesamlphp_authsource(entity_id: str) -> str:
    profile = attributes.SWEDISH_EID
    names = ",\n".join(f"        '{a.name}'" for a in profile.attributes)
    return (
        "'default-sp' => [\n"
        "    'saml:SP',\n"
        "    'entityID' => 'https://sp.example.org/metadata',\n"
        f"    'idp' => '{entity_id}',\n"
        f"    'AuthnContextClassRef' => '{profile.loa}',\n"
        "    'NameIDPolicy' => [\n"
        f"        'Format' => '{NAMEID_FORMAT_PERSISTENT}',\n"
        "        'AllowCreate' => true,\n"
        "    ],\n"
        # Without a name SimpleSAMLphp leaves AttributeConsumingService out of its metadata,
        # and the IdP releases nothing (found by tests/interop/test_simplesamlphp.py).
        "    'name' => ['sv' => 'Min tjänst', 'en' => 'My service'],\n"
        f"    'attributes.NameFormat' => '{attributes.NAME_FORMAT_URI}',\n"
        "    'attributes' => [\n"
        f"{names},\n"
        "    ],\n"
        "    'sign.authnrequest' => true,\n"
        "    'redirect.sign' => true,\n"
        "    'signature.algorithm' => 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',\n"
        "    'privatekey' => 'sp.key',\n"
        "    'certificate' => 'sp.crt',\n"
        "    'assertion.encryption' => true,\n"
        "],"
    )


def _python3_saml_settings() -> str:
    profile = attributes.SWEDISH_EID
    requested = ",\n".join(
        f'            {{"name": "{a.name}", "nameFormat": "{attributes.NAME_FORMAT_URI}", '
        f'"isRequired": True}}'
        for a in profile.attributes
    )
    return (
        '"sp": {\n'
        '    "attributeConsumingService": {\n'
        '        "serviceName": "Min tjänst",\n'
        '        "requestedAttributes": [\n'
        f"{requested},\n"
        "        ],\n"
        "    },\n"
        f'    "NameIDFormat": "{NAMEID_FORMAT_PERSISTENT}",\n'
        "},\n"
        '"security": {\n'
        '    "authnRequestsSigned": True,\n'
        '    "wantAssertionsSigned": True,\n'
        '    "wantMessagesSigned": True,\n'
        '    "wantAssertionsEncrypted": True,\n'
        f'    "requestedAuthnContext": ["{profile.loa}"],\n'
        '    "requestedAuthnContextComparison": "exact",\n'
        '    "signatureAlgorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",\n'
        '    "digestAlgorithm": "http://www.w3.org/2001/04/xmlenc#sha256",\n'
        "},"
    )


def integration_guide(entity_id: str) -> IntegrationGuide:
    """The guide for the IdP whose SAML entityID (and metadata URL) is ``entity_id``."""
    return IntegrationGuide(
        entity_id=entity_id,
        metadata_url=entity_id,
        profiles=_profile_guides(),
        name_id_formats=(
            (NAMEID_FORMAT_TRANSIENT, "a new random identifier for every login"),
            (
                NAMEID_FORMAT_PERSISTENT,
                "a pairwise pseudonym: stable for one SP, unlinkable across SPs",
            ),
            (NAMEID_FORMAT_UNSPECIFIED, "the profile's default (or no NameIDPolicy at all)"),
        ),
        comparisons=loa.COMPARISONS,
        statuses=_status_guides(),
        encryption_methods=_encryption_methods(),
        encryption_refused=tuple(encryption.REFUSED_ALGORITHMS.values()),
        encryption_min_rsa_bits=encryption.MIN_RSA_BITS,
        encryption_key_descriptor=_encryption_key_descriptor(),
        shibboleth_attribute_map=_shibboleth_attribute_map(),
        shibboleth_requested_attributes=_requested_attributes(attributes.SWEDISH_EID),
        simplesamlphp_authsource=_simplesamlphp_authsource(entity_id),
        python3_saml_settings=_python3_saml_settings(),
    )


def integration_markdown(entity_id: str = DOCUMENTED_ENTITY_ID) -> str:
    """The guide as Markdown (``idp/templates/idp/integration.md``), for the repository."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("idp", "templates"),
        autoescape=False,  # noqa: S701 - Markdown with XML and PHP snippets, not HTML
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    template = environment.get_template("idp/integration.md")
    return template.render(guide=integration_guide(entity_id))

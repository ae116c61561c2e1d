"""The integrator's report on a metadata document: one :class:`Check` a line, passed or failed.

:func:`validate_metadata` never raises for bad input: every problem, including unreadable,
oversized, malformed or DTD-carrying documents, becomes a failed check with the precise reason.
The per-entity checks (:func:`entity_problems`) are also what the remote aggregate loader uses
to decide whether an entity can be trusted.
"""

from __future__ import annotations

import base64
import calendar
import datetime as dt
import ssl
import tempfile
import urllib.parse
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from saml2 import BINDING_HTTP_POST
from saml2.time_util import str_to_time

from idp import attributes
from idp.federation.document import (
    DEFAULT_MAX_BYTES,
    DSIG_NS,
    ENTITIES_DESCRIPTOR,
    MD_NS,
    MetadataDocumentError,
    entity_descriptors,
    parse_metadata,
    read_source,
)
from idp.federation.schema import METADATA_XSD, schema_errors
from idp.federation.signing import (
    MetadataSignatureError,
    embedded_certificate,
    has_signature,
    verify_metadata_signature,
)
from idp.saml.acs import acs_location_problem
from idp.saml.encryption import choose_recipient, offers_from_element

MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
# SAML core 8.3.6: an entity identifier is at most 1024 characters.
MAX_ENTITY_ID_LENGTH = 1024
_WEAK_HASHES = (hashes.MD5, hashes.SHA1)


def _md(name: str) -> str:
    return f"{{{MD_NS}}}{name}"


@dataclass(frozen=True)
class Check:
    """One line of the report. ``entity`` is empty for checks on the whole document."""

    name: str
    passed: bool
    detail: str
    entity: str = ""

    def line(self) -> str:
        where = f" [{self.entity}]" if self.entity else ""
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}{where}: {self.detail}"


@dataclass
class Report:
    """All checks on one document, in the order they ran. ``ok`` when none failed."""

    source: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.passed for check in self.checks)

    def add(self, name: str, passed: bool, detail: str, entity: str = "") -> None:
        self.checks.append(Check(name, passed, detail, entity))

    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "ok": self.ok,
            "checks": [asdict(check) for check in self.checks],
        }


def parse_instant(value: str) -> dt.datetime:
    """An xs:dateTime from metadata as an aware UTC datetime; ValueError if it is not one."""
    try:
        return dt.datetime.fromtimestamp(calendar.timegm(str_to_time(value)), dt.UTC)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{value!r} is not an xs:dateTime") from exc


def effective_valid_until(element: etree._Element) -> dt.datetime | None:
    """The earliest ``validUntil`` on ``element`` and its ancestors (ValueError if one is bad).

    An entity in an aggregate is valid no longer than the aggregate that carries it.
    """
    earliest: dt.datetime | None = None
    node: etree._Element | None = element
    while node is not None:
        value = node.get("validUntil")
        if value:
            instant = parse_instant(value)
            earliest = instant if earliest is None else min(earliest, instant)
        node = node.getparent()
    return earliest


# --- per-entity checks ------------------------------------------------------------------------


def entity_id_problem(entity_id: str | None) -> str | None:
    """Why ``entity_id`` is not an acceptable entity ID, or None.

    An absolute ``https`` URL with a host and no query or fragment, or a ``urn:``; at most 1024
    characters (SAML core 8.3.6).
    """
    if not entity_id:
        return "the entityID attribute is missing or empty"
    if entity_id != entity_id.strip():
        return "the entityID has leading or trailing whitespace"
    if len(entity_id) > MAX_ENTITY_ID_LENGTH:
        return f"the entityID is {len(entity_id)} characters, over SAML's {MAX_ENTITY_ID_LENGTH}"
    parts = urllib.parse.urlsplit(entity_id)
    scheme = parts.scheme.lower()
    if scheme == "urn":
        return None
    if scheme != "https":
        return f"{entity_id!r} is neither an https URL nor a urn"
    if not parts.hostname:
        return f"{entity_id!r} has no host"
    if parts.query or parts.fragment:
        return f"{entity_id!r} has a query or fragment"
    return None


def acs_locations(entity: etree._Element) -> list[str]:
    """The HTTP-POST AssertionConsumerService locations of the entity's SPSSODescriptors."""
    return [
        acs.get("Location") or ""
        for sp in entity.findall(_md("SPSSODescriptor"))
        for acs in sp.findall(_md("AssertionConsumerService"))
        if acs.get("Binding") == BINDING_HTTP_POST
    ]


def acs_problems(entity: etree._Element, *, allow_http_loopback: bool = False) -> list[str]:
    """Why the entity's ACS endpoints are unusable: none for HTTP-POST, a location the runtime
    would refuse (:func:`idp.saml.acs.acs_location_problem`), an index used twice."""
    problems = []
    if not acs_locations(entity):
        problems.append("no AssertionConsumerService with the HTTP-POST binding")
    seen_indices: set[str] = set()
    for sp in entity.findall(_md("SPSSODescriptor")):
        for acs in sp.findall(_md("AssertionConsumerService")):
            if acs.get("Binding") == BINDING_HTTP_POST:
                problem = acs_location_problem(
                    acs.get("Location") or "", allow_http_loopback=allow_http_loopback
                )
                if problem:
                    problems.append(problem)
            index = acs.get("index") or ""
            if index in seen_indices:
                problems.append(f"ACS index {index} is used twice")
            seen_indices.add(index)
    return problems


def _certificates(entity: etree._Element) -> list[tuple[str, str]]:
    """(use, base64 DER) of every KeyDescriptor certificate in the entity's role descriptors."""
    found = []
    for descriptor in entity.iter(_md("KeyDescriptor")):
        use = descriptor.get("use") or "signing+encryption"
        for text in descriptor.iter(f"{{{DSIG_NS}}}X509Certificate"):
            found.append((use, "".join((text.text or "").split())))
    return found


def certificate_problems(certificate: x509.Certificate, now: dt.datetime) -> list[str]:
    """Why ``certificate`` is unfit: expired, not yet valid, weak key, MD5/SHA-1 signature."""
    problems = []
    subject = certificate.subject.rfc4514_string() or "(empty subject)"
    if certificate.not_valid_after_utc <= now:
        problems.append(
            f"{subject} expired {certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
        )
    if certificate.not_valid_before_utc > now:
        problems.append(
            f"{subject} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d} UTC"
        )
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            problems.append(f"{subject} has a {key.key_size}-bit RSA key (minimum {MIN_RSA_BITS})")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size < MIN_EC_BITS:
            problems.append(f"{subject} has a {key.curve.name} key (minimum {MIN_EC_BITS} bits)")
    else:
        problems.append(f"{subject} has a {type(key).__name__}, not an RSA or EC key")
    algorithm = certificate.signature_hash_algorithm
    if algorithm is not None and isinstance(algorithm, _WEAK_HASHES):
        problems.append(f"{subject} is signed with {algorithm.name.upper()}")
    return problems


def certificate_check(entity: etree._Element, now: dt.datetime) -> tuple[bool, str]:
    """(passed, detail) over every certificate of the entity."""
    found = _certificates(entity)
    if not found:
        return False, "no certificate in any KeyDescriptor"
    problems: list[str] = []
    summaries = []
    for use, text in found:
        try:
            certificate = x509.load_der_x509_certificate(base64.b64decode(text, validate=True))
        except ValueError:
            problems.append(f"a {use} certificate is not a valid base64 DER X.509 certificate")
            continue
        problems.extend(certificate_problems(certificate, now))
        key = certificate.public_key()
        size = key.key_size if isinstance(key, rsa.RSAPublicKey) else getattr(key, "curve", None)
        kind = (
            f"RSA {size}" if isinstance(key, rsa.RSAPublicKey) else str(getattr(size, "name", ""))
        )
        summaries.append(f"{use}: {kind}, valid until {certificate.not_valid_after_utc:%Y-%m-%d}")
    if problems:
        return False, "; ".join(problems)
    return True, f"{len(found)} certificate(s) usable ({'; '.join(summaries)})"


def encryption_check(entity_id: str, sp_descriptor: etree._Element) -> tuple[bool, str]:
    """(passed, detail): how the IdP will encrypt Assertions for this SP, by the same choice
    the running IdP makes (:func:`idp.saml.encryption.choose_recipient`).

    Fails when the SP publishes encryption keys and none is usable: it expects encrypted
    Assertions and would not get them.
    """
    offers = offers_from_element(sp_descriptor)
    if not offers:
        return True, "no encryption key: Assertions are signed, not encrypted"
    choice = choose_recipient(entity_id, offers)
    notes = "".join(f"; {note}" for note in choice.problems)
    if choice.recipient is None:
        return False, "no usable encryption key" + notes
    chosen = choice.recipient.algorithms
    transport = f"{chosen.key_transport} ({chosen.oaep_digest}" + (
        f", {chosen.mgf})" if chosen.mgf else ")"
    )
    return True, (
        f"Assertions encrypted for {choice.recipient.subject} with {chosen.content}, "
        f"key transport {transport}{notes}"
    )


def requested_attribute_problems(
    entity: etree._Element, known: Iterable[str] | None = None
) -> tuple[list[str], list[str]]:
    """(requested names, those the IdP does not know how to release)."""
    known_names = set(known if known is not None else attributes.friendly_names())
    requested = [
        attribute.get("Name") or "" for attribute in entity.iter(_md("RequestedAttribute"))
    ]
    return requested, [name for name in requested if name not in known_names]


def entity_problems(
    entity: etree._Element, now: dt.datetime, *, allow_http_loopback_acs: bool = False
) -> list[str]:
    """Every reason the IdP must not trust this SP entity (empty when it can).

    Used by the remote aggregate loader: entity ID form, ACS endpoints, certificates.
    """
    problems = []
    entity_id_issue = entity_id_problem(entity.get("entityID"))
    if entity_id_issue:
        problems.append(entity_id_issue)
    if entity.find(_md("SPSSODescriptor")) is not None:
        problems.extend(acs_problems(entity, allow_http_loopback=allow_http_loopback_acs))
    passed, detail = certificate_check(entity, now)
    if not passed:
        problems.append(detail)
    return problems


# --- whole document ---------------------------------------------------------------------------


def duplicate_entity_ids(entities: Iterable[etree._Element]) -> list[str]:
    """Entity IDs that occur more than once, in first-seen order."""
    seen: set[str] = set()
    duplicates: list[str] = []
    for entity in entities:
        entity_id = entity.get("entityID") or ""
        if entity_id in seen and entity_id not in duplicates:
            duplicates.append(entity_id)
        seen.add(entity_id)
    return duplicates


def shared_acs(entities: Iterable[etree._Element]) -> dict[str, list[str]]:
    """ACS location → the entity IDs claiming it, for locations claimed by more than one entity.

    An entity that lists another's ACS could have responses meant for that SP sent where it
    chooses; the IdP trusts neither while the claim stands.
    """
    claims: dict[str, list[str]] = {}
    for entity in entities:
        entity_id = entity.get("entityID") or ""
        for location in set(acs_locations(entity)):
            claims.setdefault(location, [])
            if entity_id not in claims[location]:
                claims[location].append(entity_id)
    return {location: ids for location, ids in claims.items() if len(ids) > 1}


def _check_signature(
    report: Report, data: bytes, root: etree._Element, federation_cert: Path | None
) -> None:
    signed = has_signature(root)
    if federation_cert is not None:
        try:
            verify_metadata_signature(data, root, federation_cert)
        except MetadataSignatureError as exc:
            report.add("signature", False, f"not verified with {federation_cert.name}: {exc}")
        else:
            report.add("signature", True, f"signed, verified with {federation_cert.name}")
        return
    if not signed:
        report.add(
            "signature",
            True,
            "not signed (nothing to check; pass --federation-cert to require a signature)",
        )
        return
    certificate = embedded_certificate(root)
    if certificate is None:
        report.add(
            "signature",
            False,
            "signed, but there is no certificate to check it with; pass --federation-cert",
        )
        return
    with tempfile.NamedTemporaryFile(suffix=".pem") as handle:
        handle.write(certificate.public_bytes(serialization.Encoding.PEM))
        handle.flush()
        try:
            verify_metadata_signature(data, root, Path(handle.name))
        except MetadataSignatureError as exc:
            report.add("signature", False, f"invalid: {exc}")
            return
    report.add(
        "signature",
        True,
        "signature valid with the certificate it carries "
        f"({certificate.subject.rfc4514_string()}); not a trust decision: "
        "pass --federation-cert to check against a pinned certificate",
    )


def _check_valid_until(report: Report, root: etree._Element, now: dt.datetime) -> None:
    elements = [root, *entity_descriptors(root)] if root.tag == ENTITIES_DESCRIPTOR else [root]
    problems, earliest = [], None
    for element in elements:
        value = element.get("validUntil")
        if not value:
            continue
        try:
            instant = parse_instant(value)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        earliest = instant if earliest is None else min(earliest, instant)
        if instant <= now:
            name = element.get("entityID") or etree.QName(element).localname
            problems.append(f"{name} expired at {value}")
    if problems:
        report.add("validUntil", False, "; ".join(problems))
    elif earliest is None:
        report.add("validUntil", True, "not set: the metadata does not expire by itself")
    else:
        report.add(
            "validUntil",
            True,
            f"valid until {earliest:%Y-%m-%dT%H:%M:%SZ} "
            f"({(earliest - now).total_seconds() / 3600:.1f} hours from now)",
        )


def validate_metadata(
    source: str,
    *,
    federation_cert: Path | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    verify: ssl.SSLContext | bool = True,
    now: dt.datetime | None = None,
    data: bytes | None = None,
    allow_http_loopback_acs: bool = False,
) -> Report:
    """Check the metadata at ``source`` (file or https URL, or ``data`` if given).

    ``allow_http_loopback_acs`` is the IdP's ``IDP_ALLOW_HTTP_LOOPBACK_ACS``: the ACS check
    takes the decision the running IdP takes with that setting.
    """
    now = now or dt.datetime.now(dt.UTC)
    report = Report(source)
    try:
        if data is None:
            data = read_source(source, max_bytes=max_bytes, verify=verify)
        root = parse_metadata(data, max_bytes=max_bytes)
    except MetadataDocumentError as exc:
        report.add("document", False, f"{exc.reason}: {exc.detail}")
        return report
    entities = entity_descriptors(root)
    report.add(
        "document",
        True,
        f"well-formed {etree.QName(root).localname} with {len(entities)} entity(ies), "
        f"{len(data)} bytes",
    )
    errors = schema_errors(root)
    if errors:
        report.add("schema", False, f"invalid against {METADATA_XSD}: " + "; ".join(errors))
    else:
        report.add(
            "schema", True, f"valid against {METADATA_XSD} (with mdui, algsupport, mdattr, xenc11)"
        )
    _check_signature(report, data, root, federation_cert)
    _check_valid_until(report, root, now)
    duplicates = duplicate_entity_ids(entities)
    if duplicates:
        report.add("entity-ids-unique", False, "duplicated entity IDs: " + ", ".join(duplicates))
    elif len(entities) > 1:
        report.add("entity-ids-unique", True, f"{len(entities)} distinct entity IDs")
    claims = shared_acs(entities)
    if claims:
        report.add(
            "acs-unique",
            False,
            "; ".join(
                f"ACS {location} is claimed by {', '.join(ids)}"
                for location, ids in sorted(claims.items())
            ),
        )
    elif len(entities) > 1:
        report.add("acs-unique", True, "no ACS location is claimed by two entities")
    for entity in entities:
        _check_entity(report, entity, now, allow_http_loopback_acs)
    return report


def _check_entity(
    report: Report, entity: etree._Element, now: dt.datetime, allow_http_loopback_acs: bool
) -> None:
    entity_id = entity.get("entityID") or ""
    problem = entity_id_problem(entity_id)
    report.add("entity-id", problem is None, problem or "an https URL or urn", entity_id)
    if entity.find(_md("SPSSODescriptor")) is None:
        report.add("acs", True, "not an SP (no SPSSODescriptor): no ACS needed", entity_id)
    else:
        problems = acs_problems(entity, allow_http_loopback=allow_http_loopback_acs)
        report.add(
            "acs",
            not problems,
            "; ".join(problems) or "HTTP-POST, usable: " + ", ".join(acs_locations(entity)),
            entity_id,
        )
    passed, detail = certificate_check(entity, now)
    report.add("certificates", passed, detail, entity_id)
    for sp_descriptor in entity.findall(_md("SPSSODescriptor")):
        passed, detail = encryption_check(entity_id, sp_descriptor)
        report.add("encryption", passed, detail, entity_id)
    requested, unknown = requested_attribute_problems(entity)
    if unknown:
        report.add(
            "requested-attributes",
            False,
            "the IdP does not release: " + ", ".join(unknown),
            entity_id,
        )
    elif requested:
        report.add(
            "requested-attributes", True, f"{len(requested)} requested, all known", entity_id
        )
    else:
        report.add("requested-attributes", True, "none requested", entity_id)

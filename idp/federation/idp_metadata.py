"""The IdP's own metadata: pysaml2's EntityDescriptor, completed and signed in-process.

pysaml2 builds the descriptor from the IdP configuration (endpoints, NameID formats, mdui,
organisation, contacts, the current signing certificate). This module adds what it cannot:
the LoA the IdP asserts as an entity attribute, an algorithm-support extension listing only what
the IdP really accepts (pysaml2 lists whatever ``xmlsec1`` knows, MD5 and SHA-1 included), the
next signing key during a rollover, ``validUntil`` and ``cacheDuration``; then it signs with the
in-process backend (pysaml2's ``create_metadata_string`` would start ``xmlsec1`` to sign).
"""

from __future__ import annotations

import datetime as dt
import threading
import weakref
from pathlib import Path

from lxml import etree
from saml2.metadata import entity_descriptor
from saml2.server import Server

from idp import attributes
from idp.federation.aggregate import xml_instant
from idp.federation.document import DSIG_NS, MD_NS
from idp.federation.signing import sign_metadata
from idp.saml.rollover import SigningKeys
from idp.saml.server import SamlIdentityProvider

ALG_NS = "urn:oasis:names:tc:SAML:metadata:algsupport"
MDATTR_NS = "urn:oasis:names:tc:SAML:metadata:attribute"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
ASSURANCE_CERTIFICATION = "urn:oasis:names:tc:SAML:attribute:assurance-certification"
# What the backend (idp/saml/xmlsec_backend.py) signs and verifies with; nothing weaker.
DIGEST_METHODS = (
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmlenc#sha512",
)
SIGNING_METHODS = (
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
)
VALID_FOR = dt.timedelta(hours=24)
# How long an SP may keep our metadata before fetching it again; also the shortest time between
# starting and finishing a key rollover.
CACHE_DURATION = dt.timedelta(hours=1)

# pysaml2's entity_descriptor() starts `xmlsec1 --list-transforms`: build the unsigned
# descriptor once per pysaml2 Server (a new one is built whenever SP metadata or keys change).
_unsigned: weakref.WeakKeyDictionary[Server, bytes] = weakref.WeakKeyDictionary()
_unsigned_lock = threading.Lock()


def _duration(delta: dt.timedelta) -> str:
    return f"PT{int(delta.total_seconds())}S"


def _certificate_text(cert_file: Path) -> str:
    return "".join(
        line
        for line in cert_file.read_text("ascii").splitlines()
        if line and not line.startswith("-----")
    )


def _unsigned_descriptor(server: Server) -> bytes:
    with _unsigned_lock:
        cached = _unsigned.get(server)
        if cached is None:
            cached = _unsigned[server] = str(entity_descriptor(server.config)).encode("utf-8")
        return cached


def _extensions(root: etree._Element) -> etree._Element:
    extensions = root.find(f"{{{MD_NS}}}Extensions")
    if extensions is None:
        extensions = etree.Element(f"{{{MD_NS}}}Extensions")
        root.insert(0, extensions)
    return extensions


def _set_algorithm_support(extensions: etree._Element) -> None:
    for child in list(extensions):
        if etree.QName(child).namespace == ALG_NS:
            extensions.remove(child)
    for algorithm in DIGEST_METHODS:
        etree.SubElement(extensions, f"{{{ALG_NS}}}DigestMethod", Algorithm=algorithm)
    for algorithm in SIGNING_METHODS:
        etree.SubElement(extensions, f"{{{ALG_NS}}}SigningMethod", Algorithm=algorithm)


def _add_assurance(extensions: etree._Element) -> None:
    entity_attributes = etree.SubElement(extensions, f"{{{MDATTR_NS}}}EntityAttributes")
    attribute = etree.SubElement(
        entity_attributes,
        f"{{{SAML_NS}}}Attribute",
        Name=ASSURANCE_CERTIFICATION,
        NameFormat=attributes.NAME_FORMAT_URI,
    )
    for profile in attributes.PROFILES:
        value = etree.SubElement(attribute, f"{{{SAML_NS}}}AttributeValue")
        value.text = profile.loa


def _add_released_attributes(root: etree._Element) -> None:
    """Every attribute the IdP can release, in both profiles' names, so an integrator's SP can
    ask by the right names (SAML metadata 2.4.3: saml:Attribute ends the IDPSSODescriptor)."""
    descriptor = root.find(f"{{{MD_NS}}}IDPSSODescriptor")
    if descriptor is None:
        raise ValueError("pysaml2 produced no IDPSSODescriptor")
    for profile in attributes.PROFILES:
        for released in profile.attributes:
            etree.SubElement(
                descriptor,
                f"{{{SAML_NS}}}Attribute",
                Name=released.name,
                NameFormat=attributes.NAME_FORMAT_URI,
                FriendlyName=released.friendly_name,
            )


def _add_next_key(root: etree._Element, cert_file: Path) -> None:
    descriptor = root.find(f"{{{MD_NS}}}IDPSSODescriptor")
    if descriptor is None:
        raise ValueError("pysaml2 produced no IDPSSODescriptor")
    existing = descriptor.findall(f"{{{MD_NS}}}KeyDescriptor")
    key_descriptor = etree.Element(f"{{{MD_NS}}}KeyDescriptor", use="signing")
    key_info = etree.SubElement(key_descriptor, f"{{{DSIG_NS}}}KeyInfo")
    data = etree.SubElement(key_info, f"{{{DSIG_NS}}}X509Data")
    etree.SubElement(data, f"{{{DSIG_NS}}}X509Certificate").text = _certificate_text(cert_file)
    # KeyDescriptors come right after the role's Extensions (metadata schema order).
    anchor = existing[-1] if existing else descriptor.find(f"{{{MD_NS}}}Extensions")
    if anchor is None:
        descriptor.insert(0, key_descriptor)
    else:
        anchor.addnext(key_descriptor)


def build_idp_metadata(
    server: Server,
    keys: SigningKeys,
    *,
    now: dt.datetime | None = None,
    valid_for: dt.timedelta = VALID_FOR,
    cache_duration: dt.timedelta = CACHE_DURATION,
) -> bytes:
    """The IdP's signed metadata document (UTF-8 bytes with an XML declaration).

    ``server`` must be configured with ``keys.cert_file`` as its certificate (the current key);
    during a rollover ``keys.next_cert_file`` is published as a second signing key. The
    document is signed with ``keys.key_file``.
    """
    now = now or dt.datetime.now(dt.UTC)
    root = etree.fromstring(_unsigned_descriptor(server))
    root.set("validUntil", xml_instant(now + valid_for))
    root.set("cacheDuration", _duration(cache_duration))
    extensions = _extensions(root)
    _set_algorithm_support(extensions)
    _add_assurance(extensions)
    _add_released_attributes(root)
    if keys.next_cert_file is not None:
        _add_next_key(root, keys.next_cert_file)
    return sign_metadata(root, keys.key_file, keys.cert_file)


def idp_metadata_xml(saml: SamlIdentityProvider) -> str:
    """The running IdP's metadata, signed in-process, valid for 24 hours: its current pysaml2
    configuration and signing keys. Blocks (signing): call it from a worker thread."""
    return build_idp_metadata(saml.server(), saml.signing_keys()).decode("utf-8")

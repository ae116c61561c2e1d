"""Reading a metadata document from a file or an HTTPS URL and parsing it without surprises.

Every refusal is a :class:`MetadataDocumentError` whose ``reason`` is a short code (tests and the
``--json`` report rely on it) and whose ``detail`` says precisely what was wrong.
"""

from __future__ import annotations

import ssl
import urllib.parse
from pathlib import Path

import httpx
from lxml import etree

from idp.errors import Refusal

MD_NS = "urn:oasis:names:tc:SAML:2.0:metadata"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
ENTITY_DESCRIPTOR = f"{{{MD_NS}}}EntityDescriptor"
ENTITIES_DESCRIPTOR = f"{{{MD_NS}}}EntitiesDescriptor"
# Larger than any single entity's metadata and than a regional federation's aggregate; the
# parser would otherwise happily build a gigabyte tree for whoever serves one.
DEFAULT_MAX_BYTES = 10 * 1024 * 1024


class MetadataDocumentError(Refusal):
    """The document cannot be used at all: not read, too big, not XML, a DTD, not metadata."""


def _parser() -> etree.XMLParser:
    # No entities, no DTD loading, no network: and a DOCTYPE is refused outright below.
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_blank_text=False,
    )


def read_source(
    source: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    verify: ssl.SSLContext | bool = True,
    timeout: float = 15.0,
) -> bytes:
    """The bytes of ``source``: a file path or an ``https://`` URL (plain ``http`` is refused).

    Reads at most ``max_bytes`` + 1 bytes, so an oversized document is refused without being
    held in memory. Raises :class:`MetadataDocumentError` (``unreadable``, ``too_large``,
    ``insecure_url``, ``fetch_failed``).
    """
    scheme = urllib.parse.urlsplit(source).scheme.lower()
    if scheme == "http":
        raise MetadataDocumentError(
            "insecure_url", f"{source}: metadata is fetched over https only"
        )
    if scheme == "https":
        return _fetch(source, max_bytes=max_bytes, verify=verify, timeout=timeout)
    path = Path(source)
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise MetadataDocumentError("unreadable", f"{source}: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise MetadataDocumentError(
            "too_large", f"{source} is larger than the limit of {max_bytes} bytes"
        )
    return data


def _fetch(url: str, *, max_bytes: int, verify: ssl.SSLContext | bool, timeout: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        with httpx.stream("GET", url, verify=verify, timeout=timeout) as response:
            if response.status_code != 200:
                raise MetadataDocumentError(
                    "fetch_failed", f"{url} answered HTTP {response.status_code}"
                )
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise MetadataDocumentError(
                    "too_large", f"{url} declares {declared} bytes, over the limit of {max_bytes}"
                )
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise MetadataDocumentError(
                        "too_large", f"{url} sent more than the limit of {max_bytes} bytes"
                    )
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise MetadataDocumentError("fetch_failed", f"{url}: {type(exc).__name__}: {exc}") from exc
    return b"".join(chunks)


def parse_metadata(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse ``data`` as a metadata document: an EntityDescriptor or an EntitiesDescriptor root.

    Refuses (``too_large``) documents over ``max_bytes``, (``dtd_refused``) any DOCTYPE — internal
    subsets are how entity expansion and XXE (CVE-2016-10149) start and metadata never needs
    one —, (``malformed_xml``) anything not well-formed, with line and column, and
    (``not_metadata``) any other root element.
    """
    if len(data) > max_bytes:
        raise MetadataDocumentError(
            "too_large", f"the document is {len(data)} bytes, over the limit of {max_bytes}"
        )
    if b"<!DOCTYPE" in data or b"<!doctype" in data:
        # Checked before parsing too: lxml with resolve_entities=False still reads the subset.
        raise MetadataDocumentError(
            "dtd_refused", "the document has a DOCTYPE; DTDs and entities are refused (XXE)"
        )
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        line, column = exc.position if exc.position else (0, 0)
        raise MetadataDocumentError(
            "malformed_xml", f"not well-formed XML at line {line}, column {column}: {exc.msg}"
        ) from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise MetadataDocumentError(
            "dtd_refused", "the document has a DOCTYPE; DTDs and entities are refused (XXE)"
        )
    if root.tag not in (ENTITY_DESCRIPTOR, ENTITIES_DESCRIPTOR):
        raise MetadataDocumentError(
            "not_metadata",
            f"the root element is {root.tag}, not md:EntityDescriptor or md:EntitiesDescriptor",
        )
    return root


def entity_descriptors(root: etree._Element) -> list[etree._Element]:
    """Every EntityDescriptor in the document, nested EntitiesDescriptors included, in order."""
    if root.tag == ENTITY_DESCRIPTOR:
        return [root]
    return list(root.iter(ENTITY_DESCRIPTOR))

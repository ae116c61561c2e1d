"""Getting the IdP's metadata: from a file, or over HTTPS from the IdP itself.

Who is trusted for what: over HTTPS the TLS server certificate must chain to ``tls_ca_file``
(the IdP's TLS CA in the test PKI); if ``idp_metadata_cert`` is configured the document must
also carry an enveloped signature by that certificate over its root element. pysaml2 does not
check that on its own: it is handed the text as inline metadata and only parses it.

All functions block (network, ``xmlsec1``): call them from a worker thread.
"""

from __future__ import annotations

import ssl
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from sp_demo.config import Settings

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

XMLSEC_BINARY = "/usr/bin/xmlsec1"
MD_NS = "urn:oasis:names:tc:SAML:2.0:metadata"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
ENTITY_DESCRIPTOR = f"{{{MD_NS}}}EntityDescriptor"
# Metadata of one IdP is a few kilobytes; refuse anything absurd before parsing it.
MAX_METADATA_BYTES = 1024 * 1024
FETCH_TIMEOUT_SECONDS = 10.0


class IdpMetadataError(Exception):
    """The IdP metadata could not be obtained or is not trustworthy (message says which)."""


def load_idp_metadata(settings: Settings) -> str:
    """The IdP metadata text: ``idp_metadata_file`` if set, else fetched from the URL.

    Raises :class:`IdpMetadataError` if it cannot be read, is not an EntityDescriptor, or
    (with ``idp_metadata_cert`` set) is not signed by that certificate.
    """
    if settings.idp_metadata_file is not None:
        try:
            xml = settings.idp_metadata_file.read_text(encoding="utf-8")
        except OSError as error:
            raise IdpMetadataError(f"cannot read {settings.idp_metadata_file}: {error}") from error
    else:
        xml = fetch_idp_metadata(settings.idp_metadata_url, settings.tls_ca_file)
    check_entity_descriptor(xml)
    if settings.idp_metadata_cert is not None:
        verify_metadata_signature(xml, settings.idp_metadata_cert)
    return xml


def fetch_idp_metadata(url: str, ca_file: Path | None) -> str:
    """GET ``url``; over HTTPS the server must chain to ``ca_file`` (if it exists), else to
    the system's trust store."""
    verify: ssl.SSLContext | bool = True
    if ca_file is not None and ca_file.is_file():
        verify = ssl.create_default_context(cafile=str(ca_file))
    try:
        with (
            httpx.Client(verify=verify, timeout=FETCH_TIMEOUT_SECONDS) as client,
            client.stream("GET", url, headers={"Accept": "application/samlmetadata+xml"}) as reply,
        ):
            if reply.status_code != 200:
                raise IdpMetadataError(f"GET {url} answered {reply.status_code}")
            body = bytearray()
            for chunk in reply.iter_bytes():
                body.extend(chunk)
                if len(body) > MAX_METADATA_BYTES:
                    raise IdpMetadataError(f"GET {url}: more than {MAX_METADATA_BYTES} bytes")
    except httpx.HTTPError as error:
        raise IdpMetadataError(f"GET {url} failed: {error}") from error
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise IdpMetadataError(f"GET {url}: not UTF-8") from error


def check_entity_descriptor(xml: str) -> None:
    """Refuse anything but one well-formed EntityDescriptor (no DTD, no entities)."""
    root = _parse(xml)
    if root.tag != ENTITY_DESCRIPTOR:
        raise IdpMetadataError(f"root element is {root.tag}, expected an EntityDescriptor")


def verify_metadata_signature(xml: str, cert_file: Path) -> None:
    """Require an enveloped signature over the root EntityDescriptor by ``cert_file``.

    xmlsec1 verifies the first Signature in document order and whatever it references, so we
    first make sure that signature is the root's own child and references the root's ID:
    otherwise a document signed elsewhere (or not at all) could pass (signature wrapping).
    """
    root = _parse(xml)
    signatures = list(root.iter(f"{{{DS_NS}}}Signature"))
    if not signatures or signatures[0] not in list(root):
        raise IdpMetadataError("the metadata is not signed (no Signature on its root element)")
    references = signatures[0].findall(f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}Reference")
    root_id = root.get("ID")
    if not root_id or len(references) != 1 or references[0].get("URI") != f"#{root_id}":
        raise IdpMetadataError("the metadata signature does not cover its root element")
    with tempfile.TemporaryDirectory(prefix="sp_demo-md-") as directory:
        document = Path(directory) / "metadata.xml"
        document.write_text(xml, encoding="utf-8")
        result = subprocess.run(
            [
                XMLSEC_BINARY,
                "--verify",
                "--enabled-reference-uris",
                "same-doc",
                "--pubkey-cert-pem",
                str(cert_file),
                "--id-attr:ID",
                f"{MD_NS}:EntityDescriptor",
                str(document),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise IdpMetadataError(f"the metadata signature does not verify: {last_line}")


def _parse(xml: str) -> Element:
    if len(xml.encode("utf-8")) > MAX_METADATA_BYTES:
        raise IdpMetadataError(f"metadata larger than {MAX_METADATA_BYTES} bytes")
    try:
        return ElementTree.fromstring(xml.encode("utf-8"), forbid_dtd=True)
    except (ElementTree.ParseError, DefusedXmlException) as error:
        raise IdpMetadataError(f"not well-formed metadata: {error}") from error

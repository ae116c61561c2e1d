"""Validation against the SAML 2.0 metadata schema, with the extensions the IdP understands.

The XSDs are pysaml2's copies (``saml2/data/schemas``); every import resolves to a local file
and xmlschema runs sandboxed, so validation never touches the network.
"""

from __future__ import annotations

import functools
from pathlib import Path

import saml2
import xmlschema
from lxml import etree

SCHEMA_DIR = Path(saml2.__file__).parent / "data" / "schemas"
METADATA_XSD = "saml-schema-metadata-2.0.xsd"
# mdui, algsupport, mdattr: their elements appear in Extensions (processContents="lax"), so they
# are checked when present and their schemas are loaded.
_EXTENSION_XSDS = (
    "sstc-saml-metadata-ui-v1.0.xsd",
    "sstc-saml-metadata-algsupport-v1.0.xsd",
    "sstc-metadata-attr.xsd",
    # xenc11:MGF in an md:EncryptionMethod (an SP's RSA-OAEP preference; strict wildcard).
    "xenc-schema-11.xsd",
)
_LOCATIONS = {
    "http://www.w3.org/2000/09/xmldsig#": "xmldsig-core-schema.xsd",
    "http://www.w3.org/2001/04/xmlenc#": "xenc-schema.xsd",
    "http://www.w3.org/2009/xmlenc11#": "xenc-schema-11.xsd",
    "http://www.w3.org/XML/1998/namespace": "xml.xsd",
    "urn:oasis:names:tc:SAML:2.0:assertion": "saml-schema-assertion-2.0.xsd",
    "urn:oasis:names:tc:SAML:2.0:metadata": METADATA_XSD,
}
MAX_ERRORS = 10


@functools.lru_cache(maxsize=1)
def metadata_schema() -> xmlschema.XMLSchema:
    """The compiled schema (about 0.5 s the first time; cached for the process)."""
    return xmlschema.XMLSchema(
        [str(SCHEMA_DIR / name) for name in (METADATA_XSD, *_EXTENSION_XSDS)],
        locations={namespace: str(SCHEMA_DIR / name) for namespace, name in _LOCATIONS.items()},
        allow="sandbox",
        base_url=str(SCHEMA_DIR),
    )


def schema_errors(root: etree._Element) -> list[str]:
    """At most :data:`MAX_ERRORS` messages, each "where: what"; empty when the document is valid."""
    errors = []
    for error in metadata_schema().iter_errors(root):
        errors.append(f"{error.path or '/'}: {error.reason}")
        if len(errors) >= MAX_ERRORS:
            break
    return errors

"""Building a signed aggregate (an EntitiesDescriptor) from a directory of entity metadata.

What a federation operator such as Sambi publishes: every member's EntityDescriptor under one
root with ``validUntil``, signed with the federation's key. Used for test federations and to
test the remote metadata source end to end.
"""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

from lxml import etree

from idp.federation.document import (
    DSIG_NS,
    ENTITIES_DESCRIPTOR,
    MD_NS,
    entity_descriptors,
    parse_metadata,
)
from idp.federation.signing import sign_metadata

DEFAULT_VALIDITY = dt.timedelta(days=7)


def xml_instant(instant: dt.datetime) -> str:
    """An xs:dateTime in UTC with a ``Z``, as metadata writes it."""
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_aggregate(
    sources: list[Path],
    *,
    key_file: Path,
    cert_file: Path,
    valid_until: dt.datetime,
    name: str = "",
    cache_duration: str = "PT1H",
) -> bytes:
    """A signed EntitiesDescriptor carrying every EntityDescriptor of ``sources``.

    Each source is read with the safe parser (no DTD, bounded size). Entity signatures are
    dropped (the aggregate's signature covers them); nothing else is checked here — an
    aggregate with a broken entity is exactly what tests need to be able to build.
    """
    root = etree.Element(ENTITIES_DESCRIPTOR, nsmap={"md": MD_NS, "ds": DSIG_NS})
    root.set("ID", "_" + secrets.token_hex(16))
    root.set("validUntil", xml_instant(valid_until))
    root.set("cacheDuration", cache_duration)
    if name:
        root.set("Name", name)
    for source in sources:
        document = parse_metadata(source.read_bytes())
        for entity in entity_descriptors(document):
            for signature in entity.findall(f"{{{DSIG_NS}}}Signature"):
                entity.remove(signature)
            root.append(entity)
    return sign_metadata(root, key_file, cert_file)


def metadata_files(directory: Path) -> list[Path]:
    """The ``*.xml`` files of ``directory``, sorted by name."""
    return sorted(path for path in directory.glob("*.xml") if path.is_file())

"""Which HSA-IDs the IdP knows, read from a file the IdP's administrators hand over.

Treserva cannot ask the IdP's directory (there is no such interface, and there should not be):
the readiness report reads a file instead. Two forms are understood: a CSV whose header has an
``hsa_id`` column (the IdP's ``idp people import`` format; a false ``active`` column, if
present, counts as unknown), or the tab-separated output of ``idp people list`` (HSA-ID first,
state last; "deactivated" counts as unknown).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

_FALSE = {"0", "false", "no", "nej", "inactive", "deactivated"}


class DirectoryFileError(Exception):
    """The file cannot be read; the message says why."""


def load_known_hsa_ids(path: Path) -> frozenset[str]:
    """The active HSA-IDs listed in ``path``."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DirectoryFileError(f"cannot read {path}: {error}") from error
    first_line = text.split("\n", 1)[0]
    if "hsa_id" in first_line.lower():
        return _from_csv(text)
    return _from_people_list(text)


def _from_csv(text: str) -> frozenset[str]:
    known: set[str] = set()
    for row in csv.DictReader(io.StringIO(text)):
        values = {(key or "").strip().lower(): (value or "").strip() for key, value in row.items()}
        if values.get("active", "").lower() in _FALSE:
            continue
        if values.get("hsa_id"):
            known.add(values["hsa_id"])
    return frozenset(known)


def _from_people_list(text: str) -> frozenset[str]:
    known: set[str] = set()
    for line in text.splitlines():
        fields = line.split("\t")
        if fields[0].strip() and fields[-1].strip().lower() not in _FALSE:
            known.add(fields[0].strip())
    return frozenset(known)

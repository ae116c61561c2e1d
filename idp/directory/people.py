"""Reading and changing the directory. Callers own the transaction (pass a Session)."""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from idp.db import Transaction
from idp.directory.models import DirectoryEntry
from idp.hsa_id import InvalidHsaId, parse_hsa_id

CSV_COLUMNS = ("hsa_id", "given_name", "surname", "title", "organisation", "mail", "person_key")
REQUIRED_COLUMNS = ("hsa_id", "given_name", "surname")


class DirectoryError(ValueError):
    """A change the directory refuses; the message says why."""


@dataclass(frozen=True)
class NewEntry:
    hsa_id: str
    given_name: str
    surname: str
    title: str = ""
    organisation: str = ""
    mail: str = ""
    person_key: str = ""


def find_entry(session: Session, hsa_id: str) -> DirectoryEntry | None:
    return session.get(DirectoryEntry, hsa_id)


def list_entries(session: Session) -> Sequence[DirectoryEntry]:
    return session.scalars(select(DirectoryEntry).order_by(DirectoryEntry.hsa_id)).all()


@dataclass(frozen=True, slots=True)
class ServiceId:
    """One directory row as a login reads it (a plain row, no ORM object)."""

    hsa_id: str
    given_name: str
    surname: str
    title: str
    organisation: str
    mail: str
    active: bool

    @property
    def organisation_number(self) -> str:
        return self.hsa_id[2:12]


_TABLE = DirectoryEntry.__table__
# Built once (SQLAlchemy's compiled cache then finds them on every login): every row of the
# person of an HSA-ID, found through the entry's person_key, the entry itself among them.
_OF_SAME_PERSON = (
    select(*(_TABLE.c[field.name] for field in fields(ServiceId)))
    .where(
        _TABLE.c.person_key
        == select(_TABLE.c.person_key)
        .where(_TABLE.c.hsa_id == bindparam("hsa_id"))
        .scalar_subquery()
    )
    .order_by(_TABLE.c.hsa_id)
)
_ACTIVE = select(_TABLE.c.active).where(_TABLE.c.hsa_id == bindparam("hsa_id"))


def is_active(session: Transaction, hsa_id: str) -> bool:
    """Whether ``hsa_id`` is in the directory and active."""
    return bool(session.execute(_ACTIVE, {"hsa_id": hsa_id}).scalar())


def entry_and_service_ids(
    session: Transaction, hsa_id: str, accepted_organisations: Iterable[str]
) -> tuple[ServiceId | None, list[ServiceId]]:
    """The entry of ``hsa_id`` (None if unknown) and the person's active HSA-IDs in the
    accepted organisations, that entry first if it is one of them. One query."""
    rows = [ServiceId(*row) for row in session.execute(_OF_SAME_PERSON, {"hsa_id": hsa_id})]
    entry = next((row for row in rows if row.hsa_id == hsa_id), None)
    if entry is None:
        return None, []
    accepted = set(accepted_organisations)
    chosen = [row for row in rows if row.active and row.organisation_number in accepted]
    chosen.sort(key=lambda row: row.hsa_id != entry.hsa_id)
    return entry, chosen


def _not_for_xml(character: str) -> bool:
    return unicodedata.category(character) in ("Cc", "Cs") or character in "\ufffe\uffff"


def _validated(new: NewEntry) -> NewEntry:
    try:
        parse_hsa_id(new.hsa_id)
    except InvalidHsaId as exc:
        raise DirectoryError(str(exc)) from exc
    if not new.given_name.strip() or not new.surname.strip():
        raise DirectoryError(f"{new.hsa_id}: given name and surname are required")
    for column in fields(new):
        value = getattr(new, column.name)
        # Names travel into SAML assertions and ID tokens. A control character (a stray tab
        # or line break from a spreadsheet, a NUL) is never part of a name, and most cannot
        # be carried by XML at all: such an entry could never log in.
        if any(_not_for_xml(character) for character in value):
            raise DirectoryError(
                f"{new.hsa_id}: {column.name} contains a control character; remove it"
            )
    return new


def add_entry(session: Session, new: NewEntry) -> DirectoryEntry:
    """Add one HSA-ID; raise :class:`DirectoryError` if it is malformed or already present."""
    new = _validated(new)
    if find_entry(session, new.hsa_id) is not None:
        raise DirectoryError(f"{new.hsa_id} is already in the directory")
    entry = DirectoryEntry(
        hsa_id=new.hsa_id,
        person_key=new.person_key or new.hsa_id,
        given_name=new.given_name.strip(),
        surname=new.surname.strip(),
        title=new.title.strip(),
        organisation=new.organisation.strip(),
        mail=new.mail.strip(),
        active=True,
    )
    session.add(entry)
    session.flush()
    return entry


def deactivate_entry(session: Session, hsa_id: str) -> DirectoryEntry:
    entry = find_entry(session, hsa_id)
    if entry is None:
        raise DirectoryError(f"{hsa_id} is not in the directory")
    entry.active = False
    return entry


@dataclass
class ImportReport:
    added: int = 0
    errors: list[str] = field(default_factory=list)


def import_csv(session: Session, data: bytes) -> ImportReport:
    """Import people from CSV (UTF-8, header row with :data:`CSV_COLUMNS`).

    All or nothing: if any row is bad, nothing is added and every bad row is reported with its
    line number.
    """
    report = ImportReport()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        report.errors.append(f"the file is not UTF-8 (byte {exc.start}): save it as UTF-8")
        return report
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    unknown = [column for column in header if column not in CSV_COLUMNS]
    if missing or unknown:
        report.errors.append(
            f"line 1: columns must be {', '.join(CSV_COLUMNS)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else "")
        )
        return report
    seen: dict[str, int] = {}
    entries: list[NewEntry] = []
    for row in reader:
        line = reader.line_num
        if None in row:
            report.errors.append(f"line {line}: more fields than columns")
            continue
        new = NewEntry(**{key: (value or "").strip() for key, value in row.items()})
        try:
            _validated(new)
        except DirectoryError as exc:
            report.errors.append(f"line {line}: {exc}")
            continue
        if new.hsa_id in seen:
            report.errors.append(f"line {line}: {new.hsa_id} repeats line {seen[new.hsa_id]}")
            continue
        if find_entry(session, new.hsa_id) is not None:
            report.errors.append(f"line {line}: {new.hsa_id} is already in the directory")
            continue
        seen[new.hsa_id] = line
        entries.append(new)
    if report.errors:
        return report
    for new in entries:
        add_entry(session, new)
    report.added = len(entries)
    return report

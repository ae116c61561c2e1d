"""The CSV files of the user register: reading an import file, writing the export.

An import file has a header row with the columns ``windows_account`` and ``hsa_id`` (comma or
semicolon separated, as Excel writes it in Sweden; UTF-8 with or without BOM). The export has
the same two columns first, plus ``display_name``, ``permissions_windows`` and
``permissions_siths`` for reading, so an export with HSA-IDs filled in can be imported again;
those extra columns are ignored on import. Line numbers are the file's own (header = line 1).

This module knows the format only; whether an account exists is for :mod:`sp_demo.user_import`.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field

from sp_demo import problems
from sp_demo.db import LOGIN_SITHS, LOGIN_WINDOWS, User
from sp_demo.problems import Problem
from sp_demo.users import describe_permissions, permissions_on

REQUIRED_COLUMNS = ("windows_account", "hsa_id")
EXPORT_COLUMNS = (*REQUIRED_COLUMNS, "display_name", "permissions_windows", "permissions_siths")
# Header spellings people type; all mean one of the columns above.
_ALIASES = {
    "windows-konto": "windows_account",
    "windows konto": "windows_account",
    "windowskonto": "windows_account",
    "hsa-id": "hsa_id",
    "hsaid": "hsa_id",
}
# A cell starting with one of these is a formula to a spreadsheet: neutralised on export.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class RowProblem:
    """A problem on one line of the file (line 1 is the header)."""

    line: int
    problem: Problem


@dataclass(frozen=True)
class ImportRow:
    line: int
    windows_account: str
    hsa_id: str


@dataclass
class ParsedImport:
    """The rows that have both values, the lines with no HSA-ID (nothing to do), and what is
    wrong with the file's form. If the header is wrong there are no rows at all."""

    rows: list[ImportRow] = field(default_factory=list)
    skipped_lines: list[int] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)


def read_import(data: bytes) -> ParsedImport:
    """Read an import file's bytes; every problem is reported, none raised."""
    parsed = ParsedImport()
    lines = _decode_lines(data, parsed.problems)
    if not any(line.strip() for line in lines):
        if not parsed.problems:
            parsed.problems.append(RowProblem(1, _empty_file()))
        return parsed
    header_text = next(line for line in lines if line.strip())
    delimiter = ";" if header_text.count(";") > header_text.count(",") else ","
    reader = csv.reader(lines, delimiter=delimiter)
    header: list[str] | None = None
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [_column_name(cell) for cell in cells]
            problem = _header_problem(header)
            if problem is not None:
                parsed.problems.append(RowProblem(reader.line_num, problem))
                return parsed
            continue
        if len(cells) != len(header):
            parsed.problems.append(
                RowProblem(reader.line_num, _field_count(len(cells), len(header)))
            )
            continue
        values = dict(zip(header, (cell.strip() for cell in cells), strict=True))
        account, hsa_id = values["windows_account"], values["hsa_id"]
        if not account:
            parsed.problems.append(RowProblem(reader.line_num, problems.missing_account()))
        elif not hsa_id:
            parsed.skipped_lines.append(reader.line_num)
        else:
            parsed.rows.append(ImportRow(reader.line_num, account, hsa_id))
    return parsed


def write_export(users: Iterable[User]) -> str:
    """The export file's text (UTF-8 when encoded; the caller adds a BOM for Excel if wanted)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for user in sorted(users, key=lambda u: u.windows_account):
        writer.writerow(
            [
                user.windows_account,
                user.hsa_id or "",
                safe_cell(user.display_name),
                safe_cell(describe_permissions(permissions_on(user, LOGIN_WINDOWS))),
                safe_cell(describe_permissions(permissions_on(user, LOGIN_SITHS))),
            ]
        )
    return out.getvalue()


def safe_cell(value: str) -> str:
    """``value`` made inert for a spreadsheet (no formula), for informative columns."""
    return f"'{value}" if value.startswith(_FORMULA_START) else value


def _decode_lines(data: bytes, found: list[RowProblem]) -> list[str]:
    # Decoded line by line, so that every line that is not UTF-8 is named; such a line is
    # kept as an empty one to keep the numbering of the lines after it.
    data = data.removeprefix(codecs.BOM_UTF8)
    lines: list[str] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.removesuffix(b"\r")
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            found.append(RowProblem(number, _not_utf8()))
            lines.append("")
    return lines


def _column_name(cell: str) -> str:
    name = cell.strip().lower()
    return _ALIASES.get(name, name)


def _header_problem(header: list[str]) -> Problem | None:
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    unknown = [name for name in header if name not in EXPORT_COLUMNS]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if not (missing or unknown or repeated):
        return None
    found = ", ".join(header) or "(inga)"
    expected = ", ".join(REQUIRED_COLUMNS)
    return Problem(
        "columns",
        f"Fel kolumner i rubrikraden: {found}. Filen ska ha kolumnerna {expected} "
        f"(kan ha {', '.join(EXPORT_COLUMNS[2:])}).",
        f"Wrong columns in the header: {found}. The file must have the columns {expected} "
        f"(may have {', '.join(EXPORT_COLUMNS[2:])}).",
    )


def _field_count(found: int, expected: int) -> Problem:
    return Problem(
        "field_count",
        f"Raden har {found} fält men rubrikraden {expected}.",
        f"The line has {found} fields but the header {expected}.",
    )


def _not_utf8() -> Problem:
    return Problem(
        "encoding",
        "Raden är inte UTF-8 (troligen Windows-1252/ANSI). Spara filen som ”CSV UTF-8” och "
        "försök igen.",
        "The line is not UTF-8 (probably Windows-1252/ANSI). Save the file as “CSV UTF-8” and "
        "try again.",
    )


def _empty_file() -> Problem:
    return Problem("empty_file", "Filen är tom.", "The file is empty.")

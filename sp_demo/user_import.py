"""Bulk import of HSA-IDs from CSV: register each row's HSA-ID and move its permissions.

All or nothing by default: every row is checked first (unknown account, malformed HSA-ID, an
HSA-ID on two rows or already on another account, an account on two rows or with another
HSA-ID, and the file's form from :mod:`sp_demo.user_csv`); if any row is bad nothing is
changed and every bad row is reported with its line number. With ``only_good_rows`` the good
rows are applied and the bad ones reported. Rows with no HSA-ID are skipped (an export that is
only partly filled in can be imported as it is).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from sp_demo import audit, problems
from sp_demo.db import User
from sp_demo.hsa_id import is_valid_hsa_id
from sp_demo.problems import Problem
from sp_demo.user_csv import ImportRow, RowProblem, read_import
from sp_demo.users import move_permissions, register_hsa_id

# progress(stage, done, total), stage "check" then "apply": called after every row.
Progress = Callable[[str, int, int], None]


@dataclass
class ImportReport:
    """What an import found and did. ``applied`` is False when nothing was changed."""

    rows: int = 0
    good_rows: int = 0
    registered: int = 0
    moved_permissions: int = 0
    unchanged: int = 0
    skipped_lines: list[int] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    applied: bool = False


def import_users(
    session: Session,
    data: bytes,
    actor: str,
    *,
    only_good_rows: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Check and (if allowed) apply an import file in the caller's transaction."""
    parsed = read_import(data)
    report = ImportReport(
        rows=len(parsed.rows) + len(parsed.skipped_lines) + len(parsed.problems),
        skipped_lines=parsed.skipped_lines,
        problems=list(parsed.problems),
    )
    good = _check_rows(session, parsed.rows, report.problems, progress)
    report.problems.sort(key=lambda found: found.line)
    report.good_rows = len(good)
    if report.problems and not only_good_rows:
        return report
    for done, row in enumerate(good, start=1):
        registration = register_hsa_id(session, row.windows_account, row.hsa_id, actor)
        moved = move_permissions(session, row.windows_account, actor)
        report.registered += int(registration.changed)
        report.moved_permissions += len(moved)
        report.unchanged += int(not registration.changed and not moved)
        if progress is not None:
            progress("apply", done, len(good))
    report.applied = True
    audit.record(
        session,
        actor,
        "import_csv",
        detail=(
            f"{report.good_rows} rows applied, {len(report.problems)} refused, "
            f"{len(report.skipped_lines)} without HSA-ID; {report.registered} HSA-IDs "
            f"registered, {report.moved_permissions} permissions moved"
        ),
    )
    return report


def _check_rows(
    session: Session,
    rows: list[ImportRow],
    found: list[RowProblem],
    progress: Progress | None,
) -> list[ImportRow]:
    """The rows that may be applied; a problem is added to ``found`` for every other one."""
    accounts = {
        account: hsa_id
        for account, hsa_id in session.execute(select(User.windows_account, User.hsa_id))
    }
    holders = {hsa_id: account for account, hsa_id in accounts.items() if hsa_id}
    lines_by_hsa_id: dict[str, list[int]] = defaultdict(list)
    lines_by_account: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        lines_by_hsa_id[row.hsa_id].append(row.line)
        lines_by_account[row.windows_account].append(row.line)

    good: list[ImportRow] = []
    for done, row in enumerate(rows, start=1):
        problem = _row_problem(row, accounts, holders, lines_by_hsa_id, lines_by_account)
        if problem is None:
            good.append(row)
        else:
            found.append(RowProblem(row.line, problem))
        if progress is not None:
            progress("check", done, len(rows))
    return good


def _row_problem(
    row: ImportRow,
    accounts: dict[str, str | None],
    holders: dict[str, str],
    lines_by_hsa_id: dict[str, list[int]],
    lines_by_account: dict[str, list[int]],
) -> Problem | None:
    if row.windows_account not in accounts:
        return problems.unknown_account(row.windows_account)
    if not is_valid_hsa_id(row.hsa_id):
        return problems.malformed_hsa_id(row.hsa_id)
    others = [line for line in lines_by_account[row.windows_account] if line != row.line]
    if others:
        return _on_other_lines("duplicate_account", _ACCOUNT, row.windows_account, others)
    others = [line for line in lines_by_hsa_id[row.hsa_id] if line != row.line]
    if others:
        return _on_other_lines("duplicate_hsa_id", _HSA_ID, row.hsa_id, others)
    holder = holders.get(row.hsa_id)
    if holder is not None and holder != row.windows_account:
        return problems.hsa_id_taken(row.hsa_id, holder)
    current = accounts[row.windows_account]
    if current is not None and current != row.hsa_id:
        return problems.hsa_id_differs(row.windows_account, current)
    return None


# (Swedish subject, Swedish noun, English subject, English noun) for the duplicate messages.
_ACCOUNT = ("Kontot", "konto", "The account", "account")
_HSA_ID = ("HSA-id", "HSA-id", "HSA-ID", "HSA-ID")


def _on_other_lines(
    code: str, words: tuple[str, str, str, str], value: str, lines: list[int]
) -> Problem:
    subject_sv, noun_sv, subject_en, noun_en = words
    listed = ", ".join(str(line) for line in lines)
    return Problem(
        code,
        f"{subject_sv} {value} står också på rad {listed}. Varje {noun_sv} får stå på en rad.",
        f"{subject_en} {value} is also on line {listed}. Each {noun_en} may be on one line only.",
    )

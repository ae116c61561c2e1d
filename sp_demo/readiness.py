"""The readiness report: who cannot log in to Treserva after the cut-over, and why.

After the cut-over an account is usable only through SITHS login, which needs three things: an
HSA-ID registered on the account, that HSA-ID known at the IdP (else the IdP refuses the
login), and the account's permissions moved to the SITHS login. Each missing one is a reason;
an account can have several. The IdP check is made only when a list of its HSA-IDs is given.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from dataclasses import dataclass

from sqlalchemy.orm import Session

from sp_demo.db import LOGIN_WINDOWS, list_users
from sp_demo.user_csv import safe_cell
from sp_demo.users import permissions_on

NO_HSA_ID = "no_hsa_id"
HSA_ID_UNKNOWN_AT_IDP = "hsa_id_unknown_at_idp"
PERMISSIONS_NOT_MOVED = "permissions_not_moved"
# (Swedish, English) for each reason, in the order the report lists them.
REASONS: dict[str, tuple[str, str]] = {
    NO_HSA_ID: ("Inget HSA-id registrerat", "No HSA-ID registered"),
    HSA_ID_UNKNOWN_AT_IDP: (
        "HSA-id:t är okänt i Åtkomsttjänsten",
        "The HSA-ID is unknown at the access service",
    ),
    PERMISSIONS_NOT_MOVED: (
        "Behörigheter ligger kvar på Windows-inloggningen",
        "Permissions are still on the Windows login",
    ),
}
CSV_COLUMNS = ("windows_account", "display_name", "hsa_id", "reasons", "description")


@dataclass(frozen=True)
class Finding:
    """One account that cannot log in after the cut-over; ``reasons`` are codes of REASONS."""

    windows_account: str
    display_name: str
    hsa_id: str | None
    reasons: tuple[str, ...]
    unmoved_permissions: int


@dataclass(frozen=True)
class ReadinessReport:
    cutover_date: dt.date
    total_accounts: int
    findings: tuple[Finding, ...]
    idp_checked: bool

    @property
    def ready_accounts(self) -> int:
        return self.total_accounts - len(self.findings)

    def count(self, reason: str) -> int:
        return Counter(r for f in self.findings for r in f.reasons)[reason]


def build_report(
    session: Session, cutover_date: dt.date, known_hsa_ids: frozenset[str] | None
) -> ReadinessReport:
    """The report over every account; ``known_hsa_ids`` None means "IdP not checked"."""
    users = list_users(session)
    findings = []
    for user in users:
        reasons = []
        if user.hsa_id is None:
            reasons.append(NO_HSA_ID)
        elif known_hsa_ids is not None and user.hsa_id not in known_hsa_ids:
            reasons.append(HSA_ID_UNKNOWN_AT_IDP)
        unmoved = len(permissions_on(user, LOGIN_WINDOWS))
        if unmoved:
            reasons.append(PERMISSIONS_NOT_MOVED)
        if reasons:
            findings.append(
                Finding(
                    user.windows_account, user.display_name, user.hsa_id, tuple(reasons), unmoved
                )
            )
    findings.sort(key=lambda f: f.windows_account)
    return ReadinessReport(cutover_date, len(users), tuple(findings), known_hsa_ids is not None)


def report_csv(report: ReadinessReport) -> str:
    """The findings as CSV (one row per account, reason codes separated by ``;``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for finding in report.findings:
        writer.writerow(
            [
                finding.windows_account,
                safe_cell(finding.display_name),
                finding.hsa_id or "",
                ";".join(finding.reasons),
                safe_cell("; ".join(REASONS[reason][0] for reason in finding.reasons)),
            ]
        )
    return out.getvalue()

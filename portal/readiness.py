"""The readiness board: for every ordered employee, which of the routine's eight steps are done
and what is missing before the cut-over, per provider and for the whole city, with CSV export.

An employee is ready when all eight steps are done and the IdP's directory knows the new
HSA-ID. Counts are "how many have got at least this far", so the bars read as a funnel.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.models import Order

# The routine's steps as the board names them: (number, Swedish, English).
STEPS: tuple[tuple[int, str, str], ...] = (
    (1, "Beställd av IT-kontaktperson", "Ordered by the IT contact person"),
    (2, "Ärende registrerat", "Case registered"),
    (3, "Kvitto med ärendenummer", "Receipt with case number"),
    (4, "Bekräftad med HSA-ID", "Confirmed with HSA-ID"),
    (5, "Vidarebefordrad, länk skickad", "Forwarded, link sent"),
    (6, "Certifikat på kortet", "Certificate on the card"),
    (7, "HSA-ID i Treserva", "HSA-ID in Treserva"),
    (8, "Behörigheter flyttade", "Permissions moved"),
)
IDP_DIRECTORY = "idp_directory"
CSV_COLUMNS = (
    "provider_org",
    "given_name",
    "surname",
    "mail",
    "card_number",
    "case_number",
    "hsa_id",
    "steps_done",
    "ready",
    "missing",
)


@dataclass(frozen=True)
class Row:
    order: Order
    steps_done: int
    missing: tuple[str, ...]  # step numbers as text, and IDP_DIRECTORY

    @property
    def ready(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class Board:
    rows: tuple[Row, ...]
    cutover_date: dt.date
    today: dt.date

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def ready(self) -> int:
        return sum(1 for row in self.rows if row.ready)

    @property
    def days_left(self) -> int:
        return (self.cutover_date - self.today).days

    def reached(self, step: int) -> int:
        return sum(1 for row in self.rows if row.steps_done >= step)

    def percent(self, count: int) -> int:
        return 0 if not self.rows else round(100 * count / len(self.rows))

    def providers(self) -> list[tuple[str, int, int]]:
        """(organisation number, employees, ready) per provider."""
        summary: dict[str, list[int]] = {}
        for row in self.rows:
            counts = summary.setdefault(row.order.provider_org, [0, 0])
            counts[0] += 1
            counts[1] += row.ready
        return [(org, total, ready) for org, (total, ready) in sorted(summary.items())]


def _row(order: Order) -> Row:
    done = order.step
    missing = [str(number) for number, _sv, _en in STEPS if number > done]
    if done >= 6 and not order.idp_directory_done:
        missing.append(IDP_DIRECTORY)
    return Row(order, done, tuple(missing))


def build_board(
    session: Session, providers: Sequence[str] | None, cutover_date: dt.date, today: dt.date
) -> Board:
    """The board over the given providers' orders (``None``: every provider, the city's)."""
    statement = select(Order).order_by(Order.provider_org, Order.surname, Order.given_name)
    if providers is not None:
        statement = statement.where(Order.provider_org.in_(providers))
    rows = tuple(_row(order) for order in session.scalars(statement))
    return Board(rows, cutover_date, today)


def _safe(value: str) -> str:
    """A cell a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def board_csv(board: Board) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in board.rows:
        order = row.order
        writer.writerow(
            [
                order.provider_org,
                _safe(order.given_name),
                _safe(order.surname),
                _safe(order.mail),
                order.card_number,
                order.case_number or "",
                order.hsa_id or "",
                row.steps_done,
                "yes" if row.ready else "no",
                ";".join(row.missing),
            ]
        )
    return out.getvalue()

"""Reading a staff's orders from CSV (UTF-8, header row with :data:`CSV_COLUMNS`).

Only the file's shape is checked here (encoding, header, field count); each row's content is
checked by :func:`portal.orders.place_orders`, which reports every bad row by its line number.
"""

from __future__ import annotations

import csv
import io

from portal.orders import OrderInput
from portal.refusals import Refused

CSV_COLUMNS = (
    "card_issuer",
    "card_number",
    "valid_to",
    "given_name",
    "surname",
    "mail",
    "windows_account",
)
REQUIRED = CSV_COLUMNS[:6]
MAX_ROWS = 5000


def read_orders(data: bytes) -> tuple[list[tuple[int, OrderInput]], list[Refused]]:
    """(line number, order) for every row, and the refusals of the file's shape."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [Refused("csv_encoding", f"byte {exc.start}", line=None)]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    if any(c not in header for c in REQUIRED) or any(c not in CSV_COLUMNS for c in header):
        return [], [Refused("csv_header", ",".join(header)[:200], line=1)]
    reader.fieldnames = header
    rows: list[tuple[int, OrderInput]] = []
    errors: list[Refused] = []
    for row in reader:
        line = reader.line_num
        if None in row:
            errors.append(Refused("csv_fields", line=line))
            continue
        values = {key: (value or "") for key, value in row.items()}
        rows.append((line, OrderInput(**values)))
        if len(rows) > MAX_ROWS:
            return [], [Refused("upload_too_large", f"more than {MAX_ROWS} rows")]
    if not rows and not errors:
        errors.append(Refused("csv_empty"))
    return rows, errors

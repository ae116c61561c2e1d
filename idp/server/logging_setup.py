"""Structured logs: one JSON object per line on stderr for the ``idp`` loggers.

Each line carries ``request_id`` while a request is being served (see
:mod:`idp.ops.request_context`), so an audit line, an error and the access line of one request
can be found together, on whichever node served it (``node``: ``IDP_NODE_NAME``, if set).
A node with several worker processes adds the process's identity to each of its lines
(``worker`` and ``pid``, or ``role: supervisor``; see :mod:`idp.server.supervisor`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping

from idp.audit import AUDIT_FIELDS
from idp.ops.request_context import current_request_id

# Attributes that a log call passes with ``extra=`` and that belong in the JSON line
# (the supervisor's events about its workers use the last six).
EXTRA_FIELDS = (
    "status",
    "duration_ms",
    "event",
    "workers",
    "worker",
    "worker_pid",
    "exit_code",
    "restart_delay_s",
)


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON. An audit record's fields are merged in (no message)."""

    def __init__(self, node: str = "", process: Mapping[str, object] | None = None) -> None:
        super().__init__()
        self._node = node
        self._process = dict(process or {})

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        request_id = current_request_id()
        if request_id:
            entry["request_id"] = request_id
        if self._node:
            entry["node"] = self._node
        entry.update(self._process)
        fields = getattr(record, AUDIT_FIELDS, None)
        if isinstance(fields, dict):
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
        for name in EXTRA_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(
    level: str = "info", *, node: str = "", process: Mapping[str, object] | None = None
) -> None:
    """Send the ``idp`` loggers to stderr as JSON lines, at ``level`` (audit always at info).

    ``process``: fields put in every line, naming this process among the node's workers.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(node, process))
    root = logging.getLogger("idp")
    root.handlers[:] = [handler]
    root.setLevel(logging.getLevelName(level.upper()))
    root.propagate = False
    logging.getLogger("idp.audit").setLevel(logging.INFO)

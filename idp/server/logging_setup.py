"""Structured logs: one JSON object per line on stderr for the ``idp`` loggers.

Each line carries ``request_id`` while a request is being served (see
:mod:`idp.ops.request_context`), so an audit line, an error and the access line of one request
can be found together, on whichever node served it (``node``: ``IDP_NODE_NAME``, if set).
"""

from __future__ import annotations

import json
import logging
import sys
import time

from idp.ops.request_context import current_request_id

# Attributes that a log call passes with ``extra=`` and that belong in the JSON line.
EXTRA_FIELDS = ("status", "duration_ms")


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON. An audit record's message is already JSON and is merged in."""

    def __init__(self, node: str = "") -> None:
        super().__init__()
        self._node = node

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
        message = record.getMessage()
        if record.name == "idp.audit":
            try:
                entry.update(json.loads(message))
            except ValueError:
                entry["message"] = message
        else:
            entry["message"] = message
        for name in EXTRA_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "info", *, node: str = "") -> None:
    """Send the ``idp`` loggers to stderr as JSON lines, at ``level`` (audit always at info)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(node))
    root = logging.getLogger("idp")
    root.handlers[:] = [handler]
    root.setLevel(logging.getLevelName(level.upper()))
    root.propagate = False
    logging.getLogger("idp.audit").setLevel(logging.INFO)

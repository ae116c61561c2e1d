"""An SMTP server for the demo that keeps every mail as an ``.eml`` file in a folder (aiosmtpd).

It accepts mail for anyone from anyone on the address it listens on (127.0.0.1 by default),
which is what a demo needs and nothing else should have: it is not a mail server.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session


class _EmlWriter:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    async def handle_DATA(self, _server: object, _session: Session, envelope: Envelope) -> str:
        with self._lock:
            number = next(self._numbers)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        recipient = "".join(c if c.isalnum() or c in ".@-" else "_" for c in envelope.rcpt_tos[0])
        path = self.directory / f"{stamp}-{number:04d}-{recipient}.eml"
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        path.write_bytes(content)
        return "250 OK"


def start_sink(directory: Path, host: str, port: int) -> Controller:
    """Start the sink (in a thread of its own); ``.stop()`` the returned controller."""
    directory.mkdir(parents=True, exist_ok=True)
    controller = Controller(_EmlWriter(directory), hostname=host, port=port)
    controller.start()
    return controller

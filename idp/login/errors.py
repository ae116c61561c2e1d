"""The one error type of a login that the user must be told about."""

from __future__ import annotations


class LoginFailed(Exception):
    """A login step was refused. ``reason`` is a stable code (see ``idp.web.messages``)."""

    def __init__(self, reason: str, detail: str = "", *, hsa_id: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.hsa_id = hsa_id

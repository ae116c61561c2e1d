"""The one error type of a login that the user must be told about."""

from __future__ import annotations

from idp.errors import Refusal


class LoginFailed(Refusal):
    """A login step was refused. ``reason`` is a stable code (see ``idp.web.messages``);
    ``hsa_id`` names who tried, when that was known before the refusal (for the audit trail)."""

    def __init__(self, reason: str, detail: str = "", *, hsa_id: str = "") -> None:
        super().__init__(reason, detail)
        self.hsa_id = hsa_id

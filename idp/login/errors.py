"""The one error type of a login that the user must be told about, and its reasons."""

from __future__ import annotations

from enum import StrEnum

from idp.errors import Refusal


class LoginReason(StrEnum):
    """Why a login step was refused; the values are the codes of ``idp.web.messages``."""

    UNKNOWN_LOGIN = "unknown_login"
    OTHER_BROWSER = "other_browser"
    EXPIRED_LOGIN = "expired_login"
    LOGIN_ALREADY_COMPLETED = "login_already_completed"
    LOGIN_CANCELLED = "login_cancelled"
    LOGIN_WRONG_STEP = "login_wrong_step"
    HSA_ID_NOT_OFFERED = "hsa_id_not_offered"
    UNKNOWN_PERSON = "unknown_person"
    PERSON_DEACTIVATED = "person_deactivated"


class LoginFailed(Refusal):
    """A login step was refused. ``hsa_id`` names who tried, when that was known before the
    refusal (for the audit trail)."""

    reason: LoginReason

    def __init__(self, reason: LoginReason, detail: str = "", *, hsa_id: str = "") -> None:
        super().__init__(reason, detail)
        self.hsa_id = hsa_id

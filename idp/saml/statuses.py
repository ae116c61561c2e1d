"""The non-success statuses the IdP answers an SP with, each with the reason code it is audited
under. One table, so a refusal and the status the SP receives cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass

from saml2 import samlp

from idp.saml.response import STATUS_REQUESTER, STATUS_RESPONDER

# The Swedish eID Framework's Registry for Identifiers: the user cancelled the operation.
EID_STATUS_CANCEL = "http://id.elegnamnden.se/status/1.0/cancel"


@dataclass(frozen=True)
class ErrorStatus:
    """A SAML status to send: top-level code, second-level code, and the audit reason."""

    top: str
    second: str
    reason: str


NO_PASSIVE = ErrorStatus(STATUS_RESPONDER, samlp.STATUS_NO_PASSIVE, "no_passive")
NO_AUTHN_CONTEXT = ErrorStatus(STATUS_RESPONDER, samlp.STATUS_NO_AUTHN_CONTEXT, "no_authn_context")
INVALID_NAME_ID_POLICY = ErrorStatus(
    STATUS_REQUESTER, samlp.STATUS_INVALID_NAMEID_POLICY, "invalid_name_id_policy"
)
AUTHN_FAILED = ErrorStatus(STATUS_RESPONDER, samlp.STATUS_AUTHN_FAILED, "authn_failed")
CANCELLED = ErrorStatus(STATUS_RESPONDER, EID_STATUS_CANCEL, "user_cancelled")

"""The one table from a refusal's reason code to the SAML status its SP is answered with.

A valid request from a known SP that the IdP cannot meet, and a login that ends without
success, go back to the SP as a signed Response with the status mapped here. A request refused
before its SP could be trusted is never answered: its codes map to None, so that every code
has its entry (``tests/test_refusal_mappings.py`` checks it) and none is forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from saml2 import samlp

from idp.login.errors import LoginReason
from idp.saml.reasons import SamlReason
from idp.saml.response import STATUS_REQUESTER, STATUS_RESPONDER
from idp.siths.validation import RejectionReason

# The Swedish eID Framework's Registry for Identifiers: the user cancelled the operation.
EID_STATUS_CANCEL = "http://id.elegnamnden.se/status/1.0/cancel"
# The code of a login the user cancelled (idp.login.steps.LoginSteps.cancel audits it).
USER_CANCELLED = "user_cancelled"


@dataclass(frozen=True)
class ErrorStatus:
    """A SAML status to send: top-level code, second-level code, and the audit reason."""

    top: str
    second: str
    reason: str


NO_PASSIVE = ErrorStatus(STATUS_RESPONDER, samlp.STATUS_NO_PASSIVE, SamlReason.NO_PASSIVE)
NO_AUTHN_CONTEXT = ErrorStatus(
    STATUS_RESPONDER, samlp.STATUS_NO_AUTHN_CONTEXT, SamlReason.NO_AUTHN_CONTEXT
)
INVALID_NAME_ID_POLICY = ErrorStatus(
    STATUS_REQUESTER, samlp.STATUS_INVALID_NAMEID_POLICY, SamlReason.INVALID_NAME_ID_POLICY
)
AUTHN_FAILED = ErrorStatus(STATUS_RESPONDER, samlp.STATUS_AUTHN_FAILED, "authn_failed")
CANCELLED = ErrorStatus(STATUS_RESPONDER, EID_STATUS_CANCEL, USER_CANCELLED)

# SAML codes that never reach the SP: the message was refused before it could be answered (or
# is the IdP's own Response that cannot be sent).
_NOT_ANSWERED = frozenset(SamlReason) - {
    SamlReason.NO_PASSIVE,
    SamlReason.NO_AUTHN_CONTEXT,
    SamlReason.INVALID_NAME_ID_POLICY,
}

SAML_STATUS: Mapping[str, ErrorStatus | None] = {
    SamlReason.NO_PASSIVE: NO_PASSIVE,
    SamlReason.NO_AUTHN_CONTEXT: NO_AUTHN_CONTEXT,
    SamlReason.INVALID_NAME_ID_POLICY: INVALID_NAME_ID_POLICY,
    **dict.fromkeys(_NOT_ANSWERED),
    # Every way a card or a login step is refused is, to the SP, a failed authentication: the
    # precise code is on the user's page and in the audit trail, not the SP's business.
    **dict.fromkeys(LoginReason, AUTHN_FAILED),
    **dict.fromkeys(RejectionReason, AUTHN_FAILED),
    USER_CANCELLED: CANCELLED,
}


def saml_status(reason: str) -> ErrorStatus:
    """The status an SP is answered with for ``reason``. Called only for answerable codes;
    any other (a code missing from the table) is answered as a failed authentication."""
    return SAML_STATUS.get(reason) or AUTHN_FAILED

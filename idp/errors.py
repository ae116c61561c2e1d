"""The one refusal model: every "no" the IdP says is a :class:`Refusal`.

A refusal carries a stable ``reason`` code and a ``detail`` for logs. The codes are what
integrators and the audit trail see, and they pick what a person is shown: the page
(:data:`idp.web.messages.MESSAGES`), the SAML status, the OIDC error and the audit event are
each mapped from the code. Where a set of codes is closed it is a ``StrEnum``
(:class:`idp.siths.validation.RejectionReason`); a ``StrEnum`` member *is* its code string,
so callers use ``reason`` as it is, whichever refusal they caught.
"""

from __future__ import annotations


class Refusal(Exception):
    """Something was refused. ``reason``: a stable code (a ``str``, or a ``StrEnum`` member,
    which is one); ``detail``: what exactly, for logs and audit, never for the user's page."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail

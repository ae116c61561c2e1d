"""Authenticate a certificate for a login method: validate → identify → mark authenticated → audit.

The one way every SITHS method (the card in this browser's TLS handshake, the card signing in
the app on another device) turns a presented certificate into who logged in. Plain Python:
the channel parses its input, opens the transaction and calls
:meth:`CertificateAuthentication.authenticate_certificate`; refusals are the existing
:class:`idp.siths.validation.CertificateRejected` and :class:`idp.login.errors.LoginFailed`.
A channel that answers in the same request (the card in this browser) has a certificate that
names one HSA-ID finish the login instead of marking it authenticated: one UPDATE, not two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from cryptography import x509

from idp.audit import AuditSink, record_audit_event
from idp.authn import Authentication
from idp.db import Transaction
from idp.login.errors import LoginFailed, LoginReason
from idp.login.identify import authentications_for_certificate
from idp.login.pending import PendingLoginRecord, PendingState, ensure_unexpired, mark_authenticated
from idp.login.policy import LoginPolicy
from idp.login.steps import FinishedLogin
from idp.siths.revocation import audit_note, audit_reason
from idp.siths.validation import SithsValidator, ValidatedCertificate

# Finishes, in the caller's transaction, a login that one HSA-ID has just authenticated:
# :meth:`idp.login.steps.LoginSteps.finish_authenticated`.
Finish = Callable[[Transaction, PendingLoginRecord, Authentication], FinishedLogin]


@dataclass(frozen=True)
class AuthenticationResult:
    """A certificate that authenticated a pending login: the validated certificate, one
    :class:`Authentication` per HSA-ID its holder may use (several: the user chooses next),
    and the finished login when the caller's ``finish`` finished it."""

    certificate: ValidatedCertificate
    authentications: list[Authentication]
    finished: FinishedLogin | None = None


class CertificateAuthentication:
    """Built once at start-up; safe to share between threads."""

    def __init__(
        self,
        validator: SithsValidator,
        policy: LoginPolicy,
        audit: AuditSink = record_audit_event,
    ) -> None:
        self._validator = validator
        self._policy = policy
        self._audit = audit

    def authenticate_certificate(
        self,
        session: Transaction,
        pending: PendingLoginRecord | None,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        method: str,
        *,
        evidence: str = "",
        then: Callable[[Transaction, AuthenticationResult], None] | None = None,
        finish: Finish | None = None,
    ) -> AuthenticationResult:
        """Validate the certificate, find who it may log in as and record that on ``pending``
        (which must still be waiting for a method: else ``login_wrong_step`` or
        ``expired_login``), run ``then`` with the result in the same transaction, and audit the
        success. With ``finish``, a certificate that names one HSA-ID also finishes the login,
        in the UPDATE that records it (the result's ``finished``), after the success is
        audited; with several, the user chooses next as without.

        ``evidence`` names what was presented in the audit event's detail (default: the
        certificate's SHA-256). Raises :class:`CertificateRejected` or :class:`LoginFailed`; a
        :class:`LoginFailed` after validation names the certificate's HSA-ID. Failures are the
        caller's to audit, since it may have to record more in the same event.
        """
        validated = self._validator.validate(leaf, intermediates)
        hsa_id = validated.hsa_id.value
        with _naming_the_card(hsa_id):
            if pending is None or pending.state != PendingState.PENDING:
                raise LoginFailed(LoginReason.LOGIN_WRONG_STEP, "the login is no longer waiting")
            ensure_unexpired(pending)
            authentications = authentications_for_certificate(
                session,
                validated,
                method=method,
                policy=self._policy,
            )
            finish_now = finish if len(authentications) == 1 else None
            if finish_now is None:
                mark_authenticated(session, pending, authentications)
        result = AuthenticationResult(validated, authentications)
        if then is not None:
            then(session, result)
        self._audit(
            session,
            "login.method",
            outcome="success",
            reason=audit_reason(validated.revocation),
            hsa_id=hsa_id,
            client_id=pending.client_id,
            method=method,
            detail=f"{evidence or f'certificate sha256 {validated.fingerprint_sha256}'}; "
            f"{audit_note(validated.revocation)}",
        )
        if finish_now is None:
            return result
        with _naming_the_card(hsa_id):
            finished = finish_now(session, pending, authentications[0])
        return replace(result, finished=finished)


@contextmanager
def _naming_the_card(hsa_id: str) -> Iterator[None]:
    """A :class:`LoginFailed` raised inside names the validated card's HSA-ID (unless it
    names one already)."""
    try:
        yield
    except LoginFailed as exc:
        exc.hsa_id = exc.hsa_id or hsa_id
        raise

"""The login's steps on the IdP's pages: the waiting login, choosing a tjänste-id, cancelling
and finishing. Plain Python, built once at start-up; each call is one transaction.

Every step is bound to the browser that started the login (its cookie token, ``browser``)
and refuses with :class:`idp.login.errors.LoginFailed`; the HTTP side renders the refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Connection

from idp.audit import AuditSink
from idp.authn import Authentication
from idp.db import Database, Transaction
from idp.login.errors import LoginFailed, LoginReason
from idp.login.pending import (
    PendingLoginRecord,
    PendingState,
    cancel_pending_login,
    choose_hsa_id,
    complete_pending_login,
    load_pending_login,
    repeat_completed_login,
)
from idp.login.sso import end_sso_sessions_by_key, sso_session_key, start_sso_session

# The states in which a login is finished: once, or again within the repeat window.
_FINISHABLE = (PendingState.AUTHENTICATED, PendingState.COMPLETED)


@dataclass(frozen=True)
class WaitingLogin:
    """A login waiting for the user to pick a method."""

    reference: str
    client_name: str


@dataclass(frozen=True)
class FinishedLogin:
    """A login completed (or repeated) in the database, for its protocol to answer; the
    browser gets ``sso_token`` as its SSO cookie."""

    protocol: str
    protocol_state: dict
    authentication: Authentication
    sso_token: str
    repeated: bool


@dataclass(frozen=True)
class CancelledLogin:
    """A login the user gave up on, with what its protocol needs for the cancel answer."""

    protocol: str
    protocol_state: dict


# Extra work in the cancelling transaction, e.g. ending the login's app order.
CancelAlso = Callable[[Transaction, PendingLoginRecord], None]
T = TypeVar("T")
# The finished login's protocol part in the finishing transaction (idp.services.Responder).
Settle = Callable[[Connection, FinishedLogin], T]


class LoginSteps:
    """Safe to share between threads; each method blocks (call it from a worker thread)."""

    def __init__(self, database: Database, audit: AuditSink, sso_ttl_seconds: int) -> None:
        self._database = database
        self._audit = audit
        self._sso_ttl_seconds = sso_ttl_seconds

    def waiting_login(self, reference: str, browser: str | None) -> WaitingLogin:
        """This browser's login ``reference`` if it still waits for a method."""
        with self._database.transaction() as session:
            pending = load_pending_login(
                session, reference, browser, expected_state=PendingState.PENDING
            )
            return WaitingLogin(pending.id, pending.client_name)

    def choose_or_finish(
        self, reference: str, browser: str | None, settle: Settle[T]
    ) -> list[dict] | tuple[FinishedLogin, T]:
        """After a method succeeded: the tjänste-ids to choose from if there are several, else
        the finished login with what ``settle`` made of it in the same transaction (its
        protocol's part). A login still waiting for a method is ``login_wrong_step``.

        Finishing happens in the same transaction that read the pending login, rather than
        reading it again in a second one."""
        with self._database.transaction() as session:
            pending = load_pending_login(
                session, reference, browser, expected_state=(PendingState.CHOOSING, *_FINISHABLE)
            )
            if pending.state == PendingState.CHOOSING:
                return list((pending.authentication or {}).get("candidates", []))
            finished = self._finish(session, pending)
            return finished, settle(session, finished)

    def finish_authenticated(
        self, session: Transaction, pending: PendingLoginRecord, authentication: Authentication
    ) -> FinishedLogin:
        """Finish, in the caller's transaction, a login still waiting for a method (``pending``
        as :func:`load_pending_login` returned it) that a method has just authenticated as one
        HSA-ID, ``authentication``: one UPDATE records who logged in and finishes (see
        :meth:`~idp.login.authenticate.CertificateAuthentication.authenticate_certificate`'s
        ``finish``)."""
        return self._finish(session, pending, authentication)

    def choose_service_id(self, reference: str, browser: str | None, hsa_id: str) -> None:
        """Pick one of the offered tjänste-ids (anything else: ``hsa_id_not_offered``)."""
        with self._database.transaction() as session:
            pending = load_pending_login(
                session, reference, browser, expected_state=PendingState.CHOOSING
            )
            choose_hsa_id(session, pending, hsa_id)

    def cancel(
        self, reference: str, browser: str | None, also: CancelAlso | None = None
    ) -> CancelledLogin:
        """End this browser's login as cancelled (running ``also`` in the same transaction)
        and audit it."""
        with self._database.transaction() as session:
            pending = load_pending_login(
                session,
                reference,
                browser,
                expected_state=(PendingState.PENDING, PendingState.CHOOSING),
            )
            if also is not None:
                also(session, pending)
            cancelled = CancelledLogin(pending.protocol, dict(pending.protocol_state))
            cancel_pending_login(session, pending)
            self._audit(
                session,
                "login",
                outcome="cancelled",
                reason="user_cancelled",
                client_id=pending.client_id,
            )
            return cancelled

    def _finish(
        self,
        session: Transaction,
        pending: PendingLoginRecord,
        authenticated: Authentication | None = None,
    ) -> FinishedLogin:
        """Complete the pending login once, start the SSO session and audit it.

        ``pending`` is this browser's, unexpired and in one of :data:`_FINISHABLE` (checked
        by :func:`load_pending_login` in the same transaction), or, with ``authenticated``,
        still pending (:meth:`finish_authenticated`). The browser that completed
        the login may come back within the repeat window (see
        :data:`idp.login.pending.REPEAT_WINDOW`) and get a fresh answer to the same request,
        unless the login's SSO session was logged out meanwhile.
        """
        if pending.state == PendingState.COMPLETED:
            # The answer was lost (node died after committing, or a reload). Replace the
            # login's SSO session: its cookie may never have arrived. None left means a logout
            # ended it, and answering again would log the user back in.
            authentication = repeat_completed_login(pending)
            key = sso_session_key(authentication)
            if not end_sso_sessions_by_key(session, authentication.hsa_id, key):
                raise LoginFailed(LoginReason.LOGIN_ALREADY_COMPLETED, "its SSO session has ended")
            outcome = "repeated"
        else:
            authentication = complete_pending_login(session, pending, authenticated)
            outcome = "success"
        sso_token = start_sso_session(session, authentication, self._sso_ttl_seconds)
        self._audit(
            session,
            "login",
            outcome=outcome,
            hsa_id=authentication.hsa_id,
            client_id=pending.client_id,
            method=authentication.method,
        )
        return FinishedLogin(
            pending.protocol,
            dict(pending.protocol_state),
            authentication,
            sso_token,
            outcome == "repeated",
        )

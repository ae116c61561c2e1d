"""SAML Single Logout as use cases: an SP's LogoutRequest or LogoutResponse, the user's own
logout at the IdP, and the run that logs out the session's SPs one after another.

Plain Python, built once at start-up (:func:`idp.app.build_components`); the HTTP endpoints
(:mod:`idp.saml.slo_endpoints`) read the binding, call one method from a worker thread and
render what it returns. Every method blocks (database, XML signatures). A refused message is
audited here and gets no SAML answer: its sender is not trusted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from idp.audit import AuditSink, record_refusal
from idp.db import Database
from idp.errors import Refusal
from idp.login.sso import (
    end_sso_session,
    end_sso_sessions_by_key,
    find_sso_session,
    sso_session_key_of_token,
)
from idp.saml import logout_run
from idp.saml.bindings import BindingMessage
from idp.saml.logout import LogoutRejected, LogoutRequestIn, Outgoing, SamlLogout
from idp.saml.participants import participants_of, session_keys_of_subject
from idp.saml.reasons import SamlReason
from idp.saml.replay import refuse_replay
from idp.saml.server import SamlIdentityProvider

logger = logging.getLogger("idp.saml")


@dataclass(frozen=True)
class LogoutDone:
    """The run is over and no SP waits for an answer: the names of the SPs that confirmed the
    logout and of those that did not (or could not be asked)."""

    confirmed: list[str]
    unconfirmed: list[str]


class SamlSingleLogout:
    """Safe to share between threads; each method blocks (call it from a worker thread)."""

    def __init__(
        self, saml: SamlIdentityProvider, logout: SamlLogout, database: Database, audit: AuditSink
    ) -> None:
        self._saml = saml
        self._logout = logout
        self._database = database
        self._audit = audit

    # --- an SP's messages ----------------------------------------------------------------------

    def receive_request(
        self, binding: str, received: BindingMessage, sso_token: str | None
    ) -> Outgoing | LogoutDone:
        """SP-initiated logout: end the sessions in which the SP knows the subject and this
        browser's own (cookie ``sso_token``), then go on with the run. Raises
        :class:`LogoutRejected` (audited)."""
        event = "saml.logout_request"
        try:
            incoming = self._logout.read_logout_request(binding, received)
        except LogoutRejected as exc:
            self.audit_refusal(event, exc)
            raise
        initiator = logout_run.Initiator(
            incoming.sp_entity_id, incoming.request_id, binding, received.relay_state
        )
        try:
            with self._database.session() as session:
                run_id = self._end_sessions(session, incoming, initiator, sso_token)
        except LogoutRejected as exc:
            self.audit_refusal(event, exc, incoming.sp_entity_id)
            raise
        return self.continue_run(run_id)

    def receive_response(self, binding: str, received: BindingMessage) -> Outgoing | LogoutDone:
        """An SP's answer to the IdP's LogoutRequest: record it and go on with the run. Raises
        :class:`LogoutRejected` (audited), also for an answer to no request of the IdP."""
        event = "saml.logout_response"
        try:
            incoming = self._logout.read_logout_response(binding, received)
        except LogoutRejected as exc:
            self.audit_refusal(event, exc)
            raise
        with self._database.session() as session:
            run_id = logout_run.record_answer(
                session, incoming.sp_entity_id, incoming.in_response_to, incoming.success
            )
        if run_id is None:
            exc = LogoutRejected(SamlReason.UNSOLICITED_RESPONSE, incoming.in_response_to[:80])
            self.audit_refusal(event, exc, incoming.sp_entity_id)
            raise exc
        if not incoming.success:
            logger.info("%s did not confirm the logout", incoming.sp_entity_id)
        return self.continue_run(run_id)

    def audit_refusal(self, event: str, refusal: Refusal, client_id: str = "") -> None:
        """Audit a refused logout message (also one refused by its binding, before here)."""
        with self._database.session() as session:
            record_refusal(self._audit, session, event, refusal, client_id=client_id)

    # --- the user's own logout -----------------------------------------------------------------

    def services_to_log_out(self, sso_token: str | None) -> list[str] | None:
        """The names of the SPs the browser's SSO session logged in to; None: no session."""
        with self._database.session() as session:
            if find_sso_session(session, sso_token) is None:
                return None
            key = sso_session_key_of_token(session, sso_token)
            entity_ids = [row.sp_entity_id for row in participants_of(session, key)] if key else []
        return self._display_names(entity_ids)

    def log_out(self, sso_token: str) -> Outgoing | LogoutDone:
        """IdP-initiated logout: end the browser's SSO session and log out its SPs."""
        with self._database.session() as session:
            authentication = find_sso_session(session, sso_token)
            key = sso_session_key_of_token(session, sso_token)
            end_sso_session(session, sso_token)
            if key and authentication is not None:
                end_sso_sessions_by_key(session, authentication.hsa_id, key)
            self._audit(
                session,
                "logout",
                outcome="success",
                reason="idp_initiated",
                hsa_id=authentication.hsa_id if authentication else "",
                method="slo",
            )
            run_id = logout_run.begin_run(session, {key} if key else set(), None)
        return self.continue_run(run_id)

    # --- the run -------------------------------------------------------------------------------

    def continue_run(self, run_id: str) -> Outgoing | LogoutDone:
        """The run's next LogoutRequest, or, when none is left, the answer to the initiating SP
        (or, without one, the outcome to show the user)."""
        while True:
            with self._database.session() as session:
                step = logout_run.next_step(session, run_id)
            if step is None:
                break
            message = self._logout_request(step, run_id)
            with self._database.session() as session:
                if message is None:
                    logout_run.mark_unsupported(session, step.participant_id)
                else:
                    logout_run.mark_sent(session, step.participant_id, message.message_id)
                    return message
        with self._database.session() as session:
            outcome = logout_run.finish_run(session, run_id)
        initiator = outcome.initiator
        if initiator is not None:
            answer = self._logout.logout_response(
                initiator.sp_entity_id,
                initiator.request_id,
                initiator.binding,
                initiator.relay_state,
                outcome.partial,
            )
            if answer is not None:
                return answer
        return LogoutDone(
            self._display_names(list(outcome.confirmed)),
            self._display_names(list(outcome.unconfirmed)),
        )

    def _logout_request(self, step: logout_run.Step, run_id: str) -> Outgoing | None:
        try:
            return self._logout.logout_request(step.subject, relay_state=run_id)
        except Exception:
            # One SP that cannot be asked (no SLO endpoint, broken metadata) must not stop
            # the others' logout: it is reported as not confirmed.
            logger.exception("no LogoutRequest for %s", step.subject.sp_entity_id)
            return None

    def _end_sessions(
        self,
        session: Session,
        incoming: LogoutRequestIn,
        initiator: logout_run.Initiator,
        sso_token: str | None,
    ) -> str:
        """Within one transaction: refuse a replay, end the subject's and this browser's
        sessions, audit, and begin the run; its id."""
        refuse_replay(session, incoming.sp_entity_id, incoming.request_id, LogoutRejected)
        subjects = session_keys_of_subject(
            session, incoming.sp_entity_id, incoming.name_id, incoming.session_indexes
        )
        keys = {key for key, _hsa_id in subjects}
        # The browser's own session too: the user asked to log out in this browser.
        browser_key = sso_session_key_of_token(session, sso_token)
        authentication = find_sso_session(session, sso_token)
        end_sso_session(session, sso_token)
        for key, hsa_id in subjects:
            end_sso_sessions_by_key(session, hsa_id, key)
        if browser_key:
            keys.add(browser_key)
        hsa_id = subjects[0][1] if subjects else (authentication.hsa_id if authentication else "")
        self._audit(
            session,
            "logout",
            outcome="success",
            reason="sp_initiated",
            hsa_id=hsa_id,
            client_id=incoming.sp_entity_id,
            method="slo",
        )
        return logout_run.begin_run(session, keys, initiator)

    def _display_names(self, entity_ids: list[str]) -> list[str]:
        names = []
        for entity_id in entity_ids:
            sp = self._saml.describe_sp(entity_id)
            names.append(sp.display_name if sp is not None else entity_id)
        return names

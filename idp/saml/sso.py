"""SAML single sign-on as use cases: receive an AuthnRequest, answer a finished login.

Plain Python, built once at start-up (:func:`idp.app.build_components`); the HTTP endpoints
(:mod:`idp.saml.endpoints`) read the binding, call one method from a worker thread and render
what it returns. Every method blocks (database, XML signatures).

Receiving a request: read and verify it (:meth:`SamlIdentityProvider.parse_authn_request`),
refuse a replayed ID, then answer from the browser's SSO session (unless ForceAuthn), answer
NoPassive (IsPassive with no session), or start a pending login for the user's pages. A
request the IdP cannot meet (RequestedAuthnContext, NameIDPolicy) is answered to its SP with
the status of :data:`idp.saml.statuses.SAML_STATUS`. Every refusal is audited here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from idp.audit import AuditSink, record_refusal
from idp.authn import Authentication
from idp.db import Database
from idp.errors import Refusal
from idp.login.pending import create_pending_login
from idp.login.sso import find_sso_session
from idp.saml.bindings import BindingMessage
from idp.saml.participants import record_participant
from idp.saml.reasons import SamlReason
from idp.saml.replay import refuse_replay
from idp.saml.response import BuiltResponse, ResponseContentError
from idp.saml.server import (
    AuthnRequestInfo,
    SamlIdentityProvider,
    SamlRequestNotMet,
    SamlRequestRejected,
    SamlResponseRefused,
    ServiceProvider,
)
from idp.saml.statuses import saml_status


@dataclass(frozen=True)
class PostToSp:
    """A signed Response (``saml_response``, base64) for the browser to post to the SP's ACS
    (from its metadata), with the request's RelayState."""

    acs_url: str
    saml_response: str
    relay_state: str

    @classmethod
    def answering(cls, request: AuthnRequestInfo, built: BuiltResponse) -> PostToSp:
        return cls(request.acs_url, built.encoded, request.relay_state)


@dataclass(frozen=True)
class LoginStarted:
    """A pending login waits on the IdP's pages under ``reference``."""

    reference: str


SsoOutcome = PostToSp | LoginStarted


class SamlSingleSignOn:
    """Safe to share between threads; each method blocks (call it from a worker thread)."""

    def __init__(
        self,
        saml: SamlIdentityProvider,
        database: Database,
        audit: AuditSink,
        *,
        pending_ttl_seconds: int,
        sso_ttl_seconds: int,
    ) -> None:
        self._saml = saml
        self._database = database
        self._audit = audit
        self._pending_ttl_seconds = pending_ttl_seconds
        self._sso_ttl_seconds = sso_ttl_seconds

    def receive(
        self, binding: str, received: BindingMessage, *, browser: str, sso_token: str | None
    ) -> SsoOutcome:
        """Receive an AuthnRequest read off ``binding`` (``received``: a
        :class:`BindingMessage`) from ``browser`` (its cookie token), whose
        SSO cookie is ``sso_token``. Raises :class:`SamlRequestRejected` (audited) when no
        answer may go to the SP, and :class:`SamlResponseRefused` as :meth:`answer` does when
        the SSO session's answer may not be sent."""
        try:
            request, sp = self._saml.parse_authn_request(binding, received)
        except SamlRequestRejected as exc:
            self._record_refusal("saml.authn_request", exc)
            raise
        except SamlRequestNotMet as exc:
            return self._not_met(exc)
        try:
            with self._database.session() as session:
                outcome = self._accept(session, request, sp, browser, sso_token)
        except SamlRequestRejected as exc:
            self._record_refusal("saml.authn_request", exc, client_id=sp.entity_id)
            raise
        if outcome is None:
            return self._answer_status(
                request, SamlReason.NO_PASSIVE, "No SSO session and IsPassive was set"
            )
        if isinstance(outcome, Authentication):
            return self.answer(request.to_json(), outcome)
        return outcome

    def audit_refusal(self, refusal: Refusal) -> None:
        """Audit an AuthnRequest refused before it reached :meth:`receive` (its binding)."""
        self._record_refusal("saml.authn_request", refusal)

    def answer(self, protocol_state: dict, authentication: Authentication) -> PostToSp:
        """The signed Response for a finished login, recording the SP as a participant of the
        login's SSO session (Single Logout must name the subject as this SP received it).

        Raises :class:`SamlResponseRefused` (audited) when nothing may be sent: a directory
        value XML cannot carry, or SP metadata that no longer allows an answer."""
        request = AuthnRequestInfo.from_json(protocol_state)
        try:
            built = self._saml.build_authn_response(request, authentication)
        except ResponseContentError as exc:
            refused = SamlResponseRefused(SamlReason.DIRECTORY_ENTRY_UNUSABLE, str(exc))
        except SamlRequestRejected as exc:
            refused = SamlResponseRefused(exc.reason, exc.detail)
        else:
            if built.subject is not None:
                record_participant(
                    self._database,
                    request.sp_entity_id,
                    authentication,
                    built.subject,
                    self._sso_ttl_seconds,
                )
            return PostToSp.answering(request, built)
        self._record_refusal(
            "saml.response",
            refused,
            outcome="failed",
            hsa_id=authentication.hsa_id,
            client_id=request.sp_entity_id,
        )
        raise refused

    def answer_failure(self, protocol_state: dict, reason: str, detail: str) -> PostToSp:
        """For a login that ended without success (``reason``, e.g. ``user_cancelled`` or a
        card's refusal code): the signed Response carrying the status of
        :data:`idp.saml.statuses.SAML_STATUS` for ``reason``."""
        return self._answer_status(AuthnRequestInfo.from_json(protocol_state), reason, detail)

    def _accept(
        self,
        session: Session,
        request: AuthnRequestInfo,
        sp: ServiceProvider,
        browser: str,
        sso_token: str | None,
    ) -> Authentication | LoginStarted | None:
        """Within one transaction: refuse a replay, then the SSO session's authentication,
        IsPassive (None), or a new pending login."""
        refuse_replay(session, sp.entity_id, request.request_id, SamlRequestRejected)
        existing = None if request.force_authn else find_sso_session(session, sso_token)
        if existing is not None:
            self._audit(
                session,
                "login",
                outcome="success",
                reason="sso_session",
                hsa_id=existing.hsa_id,
                client_id=sp.entity_id,
                method="sso",
            )
            return existing
        if request.is_passive:
            self._audit(
                session,
                "login",
                outcome="failure",
                reason=SamlReason.NO_PASSIVE,
                client_id=sp.entity_id,
            )
            return None
        pending = create_pending_login(
            session,
            browser_token=browser,
            protocol="saml",
            protocol_state=request.to_json(),
            client_id=sp.entity_id,
            client_name=sp.display_name,
            force_authn=request.force_authn,
            ttl_seconds=self._pending_ttl_seconds,
        )
        return LoginStarted(pending.id)

    def _not_met(self, exc: SamlRequestNotMet) -> PostToSp:
        """A trusted SP asked for what the IdP cannot do: tell it so, in a signed Response."""
        self._record_refusal(
            "saml.authn_request", exc, outcome="not_met", client_id=exc.request.sp_entity_id
        )
        return self._answer_status(exc.request, exc.reason, exc.detail)

    def _answer_status(self, request: AuthnRequestInfo, reason: str, detail: str) -> PostToSp:
        built = self._saml.build_error_response(request, saml_status(reason), detail)
        return PostToSp.answering(request, built)

    def _record_refusal(self, event: str, refusal: Refusal, **fields: str) -> None:
        with self._database.session() as session:
            record_refusal(self._audit, session, event, refusal, **fields)

"""SAML single sign-on as use cases: receive an AuthnRequest, answer a finished login.

Plain Python, built once at start-up (:func:`idp.app.build_components`); the HTTP endpoints
(:mod:`idp.saml.endpoints`) read the binding, call one method through
:class:`idp.blocking.BlockingCalls` (a worker thread, or the event loop for an in-process
database) and render what it returns. Every method blocks (database, XML signatures).

Receiving a request: read and verify it (:meth:`SamlIdentityProvider.parse_authn_request`),
answer from the browser's SSO session (unless ForceAuthn), answer NoPassive (IsPassive with no
session), or start a pending login for the user's pages, refusing a replayed ID in the same
transaction. The one replay that is not refused: the browser that started a login sending its
request again while that login still waits (a reload of the chooser) gets the same login. A
request the IdP cannot meet (RequestedAuthnContext, NameIDPolicy) is answered to its SP with
the status of :data:`idp.saml.statuses.SAML_STATUS`. Every refusal is audited here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from idp.audit import AuditSink, record_refusal
from idp.authn import Authentication
from idp.db import Database, Transaction
from idp.errors import Refusal
from idp.login.errors import LoginFailed
from idp.login.pending import (
    PendingState,
    create_pending_login,
    hand_over_pending_login,
    load_pending_login,
)
from idp.login.sso import find_sso_session
from idp.saml.bindings import BindingMessage
from idp.saml.participants import forget_participant, record_participant
from idp.saml.reasons import SamlReason
from idp.saml.replay import login_started_by, refuse_replay
from idp.saml.response import BuiltResponse, ResponseContentError
from idp.saml.server import (
    AuthnRequestInfo,
    PlannedResponse,
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
class PlannedAnswer:
    """A finished login's Response as :meth:`SamlSingleSignOn.plan_answer` decided it: to
    ``request``, about ``authentication``, as ``response`` says."""

    request: AuthnRequestInfo
    authentication: Authentication
    response: PlannedResponse


@dataclass(frozen=True)
class LoginStarted:
    """A pending login waits on the IdP's pages under ``reference``, for the application
    ``client_name``."""

    reference: str
    client_name: str


SsoOutcome = PostToSp | LoginStarted


@dataclass(frozen=True)
class Arrival:
    """Who sent an AuthnRequest: the browser's binding token (``browser``), its SSO cookie
    (``sso_token``), and the id of the request it came in (``delivery``: a trusted proxy's
    X-Request-ID, which the proxy's retry of that request at another node carries too)."""

    browser: str
    sso_token: str | None
    delivery: str | None


class SamlSingleSignOn:
    """Safe to share between threads; each method blocks (call it from a worker thread or
    through :class:`idp.blocking.BlockingCalls`)."""

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

    def receive(self, binding: str, received: BindingMessage, arrival: Arrival) -> SsoOutcome:
        """Receive an AuthnRequest read off ``binding`` (``received``: a
        :class:`BindingMessage`) as it arrived (:class:`Arrival`). Raises
        :class:`SamlRequestRejected` (audited) when no answer may go to the SP, and
        :class:`SamlResponseRefused` (audited) when the SSO session's answer may not be
        sent."""
        try:
            request, sp = self._saml.parse_authn_request(binding, received)
        except SamlRequestRejected as exc:
            self._record_refusal("saml.authn_request", exc)
            raise
        except SamlRequestNotMet as exc:
            return self._not_met(exc)
        outcome: Authentication | LoginStarted | PlannedAnswer | SamlResponseRefused | None
        try:
            with self._database.transaction() as session:
                outcome = self._accept(session, request, sp, arrival)
                if isinstance(outcome, Authentication):
                    outcome = self.plan_answer(session, request, outcome)
        except SamlRequestRejected as exc:
            resumed = self._same_login_again(exc, request, sp, arrival)
            if resumed is not None:
                return resumed
            self._record_refusal("saml.authn_request", exc, client_id=sp.entity_id)
            raise
        if outcome is None:
            return self._answer_status(
                request, SamlReason.NO_PASSIVE, "No SSO session and IsPassive was set"
            )
        if isinstance(outcome, SamlResponseRefused):
            raise outcome
        if isinstance(outcome, PlannedAnswer):
            return self.answer_planned(outcome)
        return outcome

    def audit_refusal(self, refusal: Refusal) -> None:
        """Audit an AuthnRequest refused before it reached :meth:`receive` (its binding)."""
        self._record_refusal("saml.authn_request", refusal)

    def plan_answer(
        self, session: Connection, request: AuthnRequestInfo, authentication: Authentication
    ) -> PlannedAnswer | SamlResponseRefused:
        """In ``session``, the transaction that finished the login (or found its SSO session):
        decide how the Response will name the user and record the SP as a participant of the
        login's SSO session under that name (Single Logout must name the subject as this SP
        received it). The Response itself is :meth:`answer_planned`'s, once that transaction
        has committed, so that no lock is held through the signing.

        A refusal (the SP's metadata no longer allows an answer) is audited in ``session`` and
        returned, not raised: the login it answers stands."""
        try:
            planned = self._saml.plan_authn_response(request, authentication)
        except SamlRequestRejected as exc:
            refused = SamlResponseRefused(exc.reason, exc.detail)
            self._audit_refused_response(session, refused, request, authentication)
            return refused
        record_participant(
            session, request.sp_entity_id, authentication, planned.subject, self._sso_ttl_seconds
        )
        return PlannedAnswer(request, authentication, planned)

    def answer_planned(self, planned: PlannedAnswer) -> PostToSp:
        """The signed Response that :meth:`plan_answer` planned.

        Raises :class:`SamlResponseRefused` (audited) when nothing may be sent: a directory
        value XML cannot carry, or encryption for the SP failed; the SP is then no participant
        of the session after all."""
        request, authentication = planned.request, planned.authentication
        response = planned.response
        try:
            built = self._saml.build_authn_response(request, authentication, response)
        except ResponseContentError as exc:
            refused = SamlResponseRefused(SamlReason.DIRECTORY_ENTRY_UNUSABLE, str(exc))
        except SamlRequestRejected as exc:
            refused = SamlResponseRefused(exc.reason, exc.detail)
        else:
            return PostToSp.answering(request, built)
        with self._database.transaction() as session:
            forget_participant(session, request.sp_entity_id, authentication, response.subject)
            self._audit_refused_response(session, refused, request, authentication)
        raise refused

    def _audit_refused_response(
        self,
        session: Transaction,
        refused: SamlResponseRefused,
        request: AuthnRequestInfo,
        authentication: Authentication,
    ) -> None:
        record_refusal(
            self._audit,
            session,
            "saml.response",
            refused,
            outcome="failed",
            hsa_id=authentication.hsa_id,
            client_id=request.sp_entity_id,
        )

    def answer_failure(self, protocol_state: dict, reason: str, detail: str) -> PostToSp:
        """For a login that ended without success (``reason``, e.g. ``user_cancelled`` or a
        card's refusal code): the signed Response carrying the status of
        :data:`idp.saml.statuses.SAML_STATUS` for ``reason``."""
        return self._answer_status(AuthnRequestInfo.from_json(protocol_state), reason, detail)

    def _accept(
        self,
        session: Transaction,
        request: AuthnRequestInfo,
        sp: ServiceProvider,
        arrival: Arrival,
    ) -> Authentication | LoginStarted | None:
        """Within one transaction: the SSO session's authentication, IsPassive (None), or a new
        pending login; and the request's ID remembered, refusing a replay (which undoes the
        rest)."""
        existing = None if request.force_authn else find_sso_session(session, arrival.sso_token)
        started: LoginStarted | None = None
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
        elif request.is_passive:
            self._audit(
                session,
                "login",
                outcome="failure",
                reason=SamlReason.NO_PASSIVE,
                client_id=sp.entity_id,
            )
        else:
            pending = create_pending_login(
                session,
                browser_token=arrival.browser,
                protocol="saml",
                protocol_state=request.to_json(),
                client_id=sp.entity_id,
                client_name=sp.display_name,
                force_authn=request.force_authn,
                ttl_seconds=self._pending_ttl_seconds,
            )
            started = LoginStarted(pending.id, pending.client_name)
        refuse_replay(
            session,
            sp.entity_id,
            request.request_id,
            SamlRequestRejected,
            started_login=started.reference if started else None,
            delivery=arrival.delivery,
        )
        return existing if existing is not None else started

    def _same_login_again(
        self,
        refusal: SamlRequestRejected,
        request: AuthnRequestInfo,
        sp: ServiceProvider,
        arrival: Arrival,
    ) -> LoginStarted | None:
        """A replayed request that started a login still waiting for a method gets that login
        again, not a refusal, in two cases only: the browser it is bound to sends it again (a
        reload of the chooser, or the way back to it), or a proxy retries the very request
        that started it at another node (the same delivery id: the first node's answer and
        cookie never reached the browser, so the login is handed over to this one). Anyone
        else gets None: the replay stands."""
        if refusal.reason != SamlReason.REPLAYED_REQUEST:
            return None
        with self._database.transaction() as session:
            started = login_started_by(session, sp.entity_id, request.request_id)
            if started is None:
                return None
            reference, delivery = started
            try:
                if arrival.delivery is not None and arrival.delivery == delivery:
                    pending = hand_over_pending_login(session, reference, arrival.browser)
                else:
                    pending = load_pending_login(
                        session, reference, arrival.browser, expected_state=PendingState.PENDING
                    )
            except LoginFailed:
                return None
        return LoginStarted(pending.id, pending.client_name)

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
        with self._database.transaction() as session:
            record_refusal(self._audit, session, event, refusal, **fields)

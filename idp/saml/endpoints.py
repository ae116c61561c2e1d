"""HTTP endpoints of the SAML IdP: metadata, SSO (Redirect and POST), and the POST response.

Adapters only: each reads the binding, calls one use case of :class:`idp.saml.sso.SamlSingleSignOn`
and renders what it returns, or the page for its refusal (:func:`idp.web.messages.page_for`).
:class:`SamlEndpoints` is built once at start-up with the use cases it serves
(:func:`idp.app.create_app`). Single Logout's endpoints live in :mod:`idp.saml.slo_endpoints`,
under the same ``/saml`` prefix.
"""

from __future__ import annotations

import functools

from fastapi import APIRouter
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from idp.blocking import BlockingCalls
from idp.login.sso import SSO_COOKIE
from idp.login.steps import FinishedLogin
from idp.saml.bindings import (
    MAX_PARAMETERS,
    BindingMessage,
    BindingMessageRejected,
    read_post_form,
    read_redirect_query,
)
from idp.saml.integration_guide import integration_guide
from idp.saml.server import AuthnRequestInfo, SamlRequestRejected, SamlResponseRefused
from idp.saml.sso import Arrival, PlannedAnswer, PostToSp, SamlSingleSignOn
from idp.saml.statuses import USER_CANCELLED
from idp.services import BackToService, BuildAnswer, FailureResponder
from idp.web.login_pages import chooser_page
from idp.web.messages import Topic, page_for
from idp.web.plain_route import PlainRoute
from idp.web.render import browser_token, error_page, render_page, set_browser_cookie


class SamlEndpoints:
    """``/saml/integration`` and the SSO endpoints, wired to ``sso`` (:meth:`router`)."""

    def __init__(
        self,
        sso: SamlSingleSignOn,
        entity_id: str,
        cert_login_url: str,
        blocking_calls: BlockingCalls,
    ) -> None:
        self.sso = sso
        self.entity_id = entity_id
        self.cert_login_url = cert_login_url
        self.blocking_calls = blocking_calls

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/saml")
        router.add_api_route("/integration", self.integration, methods=["GET"])
        # The handlers read the request themselves: no parameters for FastAPI to solve.
        router.add_api_route(
            "/sso/redirect",
            self.single_sign_on_redirect,
            methods=["GET"],
            route_class_override=PlainRoute,
        )
        router.add_api_route(
            "/sso/post", self.single_sign_on_post, methods=["POST"], route_class_override=PlainRoute
        )
        return router

    async def integration(self, request: Request) -> Response:
        """What an integrator needs beside the metadata (attribute names, LoA, NameID, statuses,
        snippets for common SPs), from the tables the IdP acts on."""
        guide = integration_guide(self.entity_id)
        return render_page(request, "idp/integration.html", {"guide": guide})

    async def single_sign_on_redirect(self, request: Request) -> Response:
        try:
            received = read_redirect_query(request.scope.get("query_string", b""))
        except BindingMessageRejected as exc:
            return await self._unreadable(request, exc)
        return await self._receive_authn_request(request, BINDING_HTTP_REDIRECT, received)

    async def single_sign_on_post(self, request: Request) -> Response:
        try:
            received = read_post_form(await request.form(max_files=0, max_fields=MAX_PARAMETERS))
        except BindingMessageRejected as exc:
            return await self._unreadable(request, exc)
        return await self._receive_authn_request(request, BINDING_HTTP_POST, received)

    async def _receive_authn_request(
        self, request: Request, binding: str, received: BindingMessage
    ) -> Response:
        token, new_browser = browser_token(request)
        # The request's id: a trusted proxy's X-Request-ID (its retry at another node carries
        # the same), else one made here (idp.ops.middleware).
        delivery = getattr(request.state, "request_id", None)
        arrival = Arrival(token, request.cookies.get(SSO_COOKIE), delivery)
        try:
            outcome = await self.blocking_calls.run(self.sso.receive, binding, received, arrival)
        except SamlRequestRejected as exc:
            return _refused(request, Topic.SAML_REQUEST, exc.reason)
        except SamlResponseRefused as exc:
            return _refused(request, Topic.SAML_RESPONSE, exc.reason)
        if isinstance(outcome, PostToSp):
            response = _post_page(request, outcome)
        else:
            # The chooser itself, not a redirect to it: one round trip (and request) less.
            response = chooser_page(
                request, self.cert_login_url, outcome.client_name, outcome.reference
            )
        if new_browser:
            set_browser_cookie(response, token)
        return response

    async def _unreadable(self, request: Request, exc: BindingMessageRejected) -> Response:
        """No AuthnRequest could be read off the binding: audited, and a page."""
        await run_in_threadpool(self.sso.audit_refusal, exc)
        return _refused(request, Topic.SAML_REQUEST, exc.reason)


def _refused(request: Request, topic: Topic, reason: str) -> Response:
    return error_page(request, reason, message=page_for(topic, reason))


def _post_page(request: Request, post: PostToSp) -> Response:
    """The HTTP-POST binding: a form that the browser submits to the ACS from metadata."""
    return render_page(
        request,
        "idp/post_binding.html",
        {
            "action": post.acs_url,
            "fields": {"SAMLResponse": post.saml_response, "RelayState": post.relay_state},
        },
    )


def saml_failure_responder(sso: SamlSingleSignOn) -> FailureResponder:
    """The SAML answer to a login that ended without success: a signed Response with the status
    for its reason (AuthnFailed, or the eID Framework's cancel status), to the request's ACS."""

    def answer(protocol_state: dict, *, cancelled: bool, detail: str) -> BackToService:
        post = sso.answer_failure(protocol_state, USER_CANCELLED if cancelled else detail, detail)
        fields = {"SAMLResponse": post.saml_response}
        if post.relay_state:
            fields["RelayState"] = post.relay_state
        return BackToService(post.acs_url, "post", fields)

    return answer


class SamlLoginResponder:
    """The SAML answer to a finished login: a signed Response posted to the requesting SP's ACS
    (a :class:`idp.services.Responder`).

    A ``repeated`` answer is simply a new Response to the same request: the SP's own
    InResponseTo bookkeeping accepts at most one of them.
    """

    def __init__(self, sso: SamlSingleSignOn) -> None:
        self._sso = sso

    def settle(self, session: Connection, finished: FinishedLogin) -> BuildAnswer:
        request = AuthnRequestInfo.from_json(finished.protocol_state)
        planned = self._sso.plan_answer(session, request, finished.authentication)
        if isinstance(planned, SamlResponseRefused):
            return lambda: planned
        return functools.partial(self._build, planned)

    def _build(self, planned: PlannedAnswer) -> PostToSp | SamlResponseRefused:
        try:
            return self._sso.answer_planned(planned)
        except SamlResponseRefused as exc:
            return exc

    def render(self, request: Request, prepared: object) -> Response:
        if isinstance(prepared, PostToSp):
            return _post_page(request, prepared)
        if isinstance(prepared, SamlResponseRefused):
            # Nothing is sent: least of all the Assertion in clear, or something broken.
            return _refused(request, Topic.SAML_RESPONSE, prepared.reason)
        raise TypeError(f"not a prepared SAML answer: {type(prepared).__name__}")

"""HTTP endpoints of the SAML IdP: metadata, SSO (Redirect and POST), and the POST response.

Adapters only: each reads the binding, calls one use case of :class:`idp.saml.sso.SamlSingleSignOn`
and renders what it returns, or the page for its refusal (:func:`idp.web.messages.page_for`).
Single Logout's endpoints live in :mod:`idp.saml.slo_endpoints` and are mounted here, under
the same ``/saml`` prefix.
"""

from __future__ import annotations

from fastapi import APIRouter
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from idp.authn import Authentication
from idp.login.sso import SSO_COOKIE
from idp.saml import slo_endpoints
from idp.saml.bindings import (
    MAX_PARAMETERS,
    BindingMessage,
    BindingMessageRejected,
    read_post_form,
    read_redirect_query,
)
from idp.saml.integration_guide import integration_guide
from idp.saml.server import SamlIdentityProvider, SamlRequestRejected, SamlResponseRefused
from idp.saml.sso import PostToSp, SamlSingleSignOn
from idp.saml.statuses import USER_CANCELLED
from idp.services import BackToService, FailureResponder, services_of
from idp.web.messages import Topic, page_for
from idp.web.render import browser_token, error_page, render_page, set_browser_cookie

router = APIRouter(prefix="/saml")
router.include_router(slo_endpoints.router)


@router.get("/integration")
async def integration(request: Request) -> Response:
    """What an integrator needs beside the metadata (attribute names, LoA, NameID, statuses,
    snippets for common SPs), from the tables the IdP acts on."""
    guide = integration_guide(services_of(request).settings.entity_id)
    return render_page(request, "idp/integration.html", {"guide": guide})


def saml_of(request: Request) -> SamlIdentityProvider:
    """The SAML side of the app serving ``request``, set once by :func:`idp.app.create_app`."""
    provider: SamlIdentityProvider = request.app.state.saml
    return provider


def sso_of(request: Request) -> SamlSingleSignOn:
    """The SSO use cases of the app serving ``request``, set once by :func:`idp.app.create_app`."""
    sso: SamlSingleSignOn = request.app.state.saml_sso
    return sso


@router.get("/sso/redirect")
async def single_sign_on_redirect(request: Request) -> Response:
    try:
        received = read_redirect_query(request.scope.get("query_string", b""))
    except BindingMessageRejected as exc:
        return await _unreadable(request, exc)
    return await _receive_authn_request(request, BINDING_HTTP_REDIRECT, received)


@router.post("/sso/post")
async def single_sign_on_post(request: Request) -> Response:
    try:
        received = read_post_form(await request.form(max_files=0, max_fields=MAX_PARAMETERS))
    except BindingMessageRejected as exc:
        return await _unreadable(request, exc)
    return await _receive_authn_request(request, BINDING_HTTP_POST, received)


async def _receive_authn_request(
    request: Request, binding: str, received: BindingMessage
) -> Response:
    token, new_browser = browser_token(request)
    sso_token = request.cookies.get(SSO_COOKIE)
    receive = sso_of(request).receive
    try:
        outcome = await run_in_threadpool(
            lambda: receive(binding, received, browser=token, sso_token=sso_token)
        )
    except SamlRequestRejected as exc:
        return _refused(request, Topic.SAML_REQUEST, exc.reason)
    except SamlResponseRefused as exc:
        return _refused(request, Topic.SAML_RESPONSE, exc.reason)
    if isinstance(outcome, PostToSp):
        response = _post_page(request, outcome)
    else:
        response = RedirectResponse(f"/login?ref={outcome.reference}", status_code=303)
    if new_browser:
        set_browser_cookie(response, token)
    return response


async def _unreadable(request: Request, exc: BindingMessageRejected) -> Response:
    """No AuthnRequest could be read off the binding: audited, and a page."""
    await run_in_threadpool(sso_of(request).audit_refusal, exc)
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


async def respond_to_saml_login(
    request: Request,
    protocol_state: dict,
    authentication: Authentication,
    *,
    repeated: bool = False,
) -> Response:
    """Answer the SP that asked: a signed Response posted to its ACS.

    A ``repeated`` answer is simply a new Response to the same request: the SP's own
    InResponseTo bookkeeping accepts at most one of them.
    """
    answer = sso_of(request).answer
    try:
        post = await run_in_threadpool(answer, protocol_state, authentication)
    except SamlResponseRefused as exc:
        # Nothing is sent: least of all the Assertion in clear, or something broken.
        return _refused(request, Topic.SAML_RESPONSE, exc.reason)
    return _post_page(request, post)

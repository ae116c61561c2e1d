"""HTTP endpoints of the SAML IdP: metadata, SSO (Redirect and POST), and the POST response.

Single Logout's endpoints live in :mod:`idp.saml.slo_endpoints` and are mounted here, under
the same ``/saml`` prefix.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from idp.audit import record_audit_event, record_audit_event_in_thread
from idp.authn import Authentication
from idp.errors import Refusal
from idp.login.pending import create_pending_login
from idp.login.sso import SSO_COOKIE, find_sso_session
from idp.saml import slo_endpoints
from idp.saml.bindings import (
    MAX_PARAMETERS,
    BindingMessage,
    BindingMessageRejected,
    read_post_form,
    read_redirect_query,
)
from idp.saml.integration_guide import integration_guide
from idp.saml.participants import record_participant
from idp.saml.response import BuiltResponse, ResponseContentError
from idp.saml.server import (
    AuthnRequestInfo,
    SamlIdentityProvider,
    SamlRequestNotMet,
    SamlRequestRejected,
    saml_of,
)
from idp.saml.statuses import AUTHN_FAILED, CANCELLED, NO_PASSIVE
from idp.services import BackToService, FailureResponder, Services, services_of
from idp.store.models import SeenMessage
from idp.web.messages import MESSAGES, SAML_REQUEST_MESSAGE, UNKNOWN_SP_MESSAGE
from idp.web.render import browser_token, error_page, render_page, set_browser_cookie

router = APIRouter(prefix="/saml")
router.include_router(slo_endpoints.router)

# A request ID is remembered for longer than an AuthnRequest can be accepted.
REPLAY_WINDOW = dt.timedelta(minutes=15)


@router.get("/integration")
async def integration(request: Request) -> Response:
    """What an integrator needs beside the metadata (attribute names, LoA, NameID, statuses,
    snippets for common SPs), from the tables the IdP acts on."""
    guide = integration_guide(services_of(request).settings.entity_id)
    return render_page(request, "idp/integration.html", {"guide": guide})


@router.get("/sso/redirect")
async def single_sign_on_redirect(request: Request) -> Response:
    try:
        received = read_redirect_query(request.scope.get("query_string", b""))
    except BindingMessageRejected as exc:
        return await _rejected(services_of(request), request, exc)
    return await _receive_authn_request(request, BINDING_HTTP_REDIRECT, received)


@router.post("/sso/post")
async def single_sign_on_post(request: Request) -> Response:
    try:
        received = read_post_form(await request.form(max_files=0, max_fields=MAX_PARAMETERS))
    except BindingMessageRejected as exc:
        return await _rejected(services_of(request), request, exc)
    return await _receive_authn_request(request, BINDING_HTTP_POST, received)


async def _receive_authn_request(
    request: Request, binding: str, received: BindingMessage
) -> Response:
    services = services_of(request)
    try:
        info, sp = await run_in_threadpool(saml_of(request).parse_authn_request, binding, received)
    except SamlRequestRejected as exc:
        return await _rejected(services, request, exc)
    except SamlRequestNotMet as exc:
        return await _answer_not_met(request, exc)
    token, new_browser = browser_token(request)
    sso_token = request.cookies.get(SSO_COOKIE)

    def accept() -> tuple[str, Any]:
        with services.database.session() as session:
            session.add(
                SeenMessage(
                    issuer=sp.entity_id,
                    message_id=info.request_id[:256],
                    expires_at=dt.datetime.now(dt.UTC) + REPLAY_WINDOW,
                )
            )
            try:
                session.flush()
            except IntegrityError as exc:
                raise SamlRequestRejected("replayed_request", info.request_id[:80]) from exc
            existing = None if info.force_authn else find_sso_session(session, sso_token)
            if existing is not None:
                record_audit_event(
                    session,
                    "login",
                    outcome="success",
                    reason="sso_session",
                    hsa_id=existing.hsa_id,
                    client_id=sp.entity_id,
                    method="sso",
                )
                return "sso", existing
            if info.is_passive:
                record_audit_event(
                    session,
                    "login",
                    outcome="failure",
                    reason="no_passive",
                    client_id=sp.entity_id,
                )
                return "no_passive", None
            pending = create_pending_login(
                session,
                browser_token=token,
                protocol="saml",
                protocol_state=info.to_json(),
                client_id=sp.entity_id,
                client_name=sp.display_name,
                force_authn=info.force_authn,
                ttl_seconds=services.settings.pending_login_ttl_seconds,
            )
            return "pending", pending.id

    try:
        outcome, value = await run_in_threadpool(accept)
    except SamlRequestRejected as exc:
        return await _rejected(services, request, exc, client_id=sp.entity_id)
    if outcome == "sso":
        response = await respond_to_saml_login(request, info.to_json(), value)
    elif outcome == "no_passive":
        built = await run_in_threadpool(
            saml_of(request).build_error_response,
            info,
            NO_PASSIVE,
            "No SSO session and IsPassive was set",
        )
        response = _post_page(request, info, built.encoded)
    else:
        response = RedirectResponse(f"/login?ref={value}", status_code=303)
    if new_browser:
        set_browser_cookie(response, token)
    return response


async def _answer_not_met(request: Request, exc: SamlRequestNotMet) -> Response:
    """A trusted SP asked for what the IdP cannot do: tell it so, in a signed Response."""
    services = services_of(request)
    await record_audit_event_in_thread(
        services.database,
        "saml.authn_request",
        outcome="not_met",
        reason=exc.status.reason,
        client_id=exc.request.sp_entity_id,
        detail=exc.detail,
    )
    built = await run_in_threadpool(
        saml_of(request).build_error_response, exc.request, exc.status, exc.detail
    )
    return _post_page(request, exc.request, built.encoded)


async def _rejected(
    services: Services, request: Request, exc: Refusal, client_id: str = ""
) -> Response:
    """An AuthnRequest refused before any SP may be answered: audited, and a page."""
    await record_audit_event_in_thread(
        services.database,
        "saml.authn_request",
        outcome="rejected",
        reason=exc.reason,
        client_id=client_id,
        detail=exc.detail,
    )
    message = UNKNOWN_SP_MESSAGE if exc.reason == "unknown_sp" else SAML_REQUEST_MESSAGE
    return error_page(request, exc.reason, message=message)


def _post_page(request: Request, info: AuthnRequestInfo, saml_response: str) -> Response:
    """The HTTP-POST binding: a form that the browser submits to the ACS from metadata."""
    return render_page(
        request,
        "idp/post_binding.html",
        {
            "action": info.acs_url,
            "fields": {"SAMLResponse": saml_response, "RelayState": info.relay_state},
        },
    )


def saml_failure_responder(saml: SamlIdentityProvider) -> FailureResponder:
    """The SAML answer to a login that ended without success: a signed Response, Responder with
    AuthnFailed (or the eID Framework's cancel status), to the ACS the request was given."""

    def answer(protocol_state: dict, *, cancelled: bool, detail: str) -> BackToService:
        info = AuthnRequestInfo.from_json(protocol_state)
        built = saml.build_error_response(info, CANCELLED if cancelled else AUTHN_FAILED, detail)
        fields = {"SAMLResponse": built.encoded}
        if info.relay_state:
            fields["RelayState"] = info.relay_state
        return BackToService(info.acs_url, "post", fields)

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
    services = services_of(request)
    info = AuthnRequestInfo.from_json(protocol_state)

    def build_and_record() -> BuiltResponse:
        built = saml_of(request).build_authn_response(info, authentication)
        # Single Logout must later name the subject exactly as this SP received it.
        if built.subject is not None:
            record_participant(
                services.database,
                info.sp_entity_id,
                authentication,
                built.subject,
                services.settings.sso_session_ttl_seconds,
            )
        return built

    try:
        built = await run_in_threadpool(build_and_record)
    except ResponseContentError as exc:
        # A directory value that XML cannot carry: nobody can be logged in with it until the
        # directory is corrected, so say so instead of sending the SP something broken.
        await record_audit_event_in_thread(
            services.database,
            "saml.response",
            outcome="failed",
            reason="directory_entry_unusable",
            hsa_id=authentication.hsa_id,
            client_id=info.sp_entity_id,
            detail=str(exc),
        )
        return error_page(request, "directory_entry_unusable")
    except SamlRequestRejected as exc:
        # The SP's metadata changed since its request was accepted (no usable encryption key
        # where one is required, an ACS that may not receive a Response), or encryption
        # failed: nothing is sent, least of all the Assertion in clear.
        await record_audit_event_in_thread(
            services.database,
            "saml.response",
            outcome="failed",
            reason=exc.reason,
            hsa_id=authentication.hsa_id,
            client_id=info.sp_entity_id,
            detail=exc.detail,
        )
        return error_page(request, exc.reason, message=MESSAGES["sp_cannot_be_answered"])
    return _post_page(request, info, built.encoded)

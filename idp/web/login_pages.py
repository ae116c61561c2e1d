"""The login pages on the IdP's main origin: choose a method, choose a tjänste-id, finish."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from idp.audit import record_audit_event
from idp.authn import Authentication
from idp.login.errors import LoginFailed
from idp.login.pending import (
    BROWSER_COOKIE,
    choose_hsa_id,
    complete_pending_login,
    load_pending_login,
    repeat_completed_login,
)
from idp.login.sso import SSO_COOKIE, end_sso_sessions_by_key, sso_session_key, start_sso_session
from idp.services import services_of
from idp.web.refusals import refuse
from idp.web.render import render_page, set_cookie

router = APIRouter()


@router.get("/login")
async def choose_method(request: Request, ref: str = "") -> Response:
    """The chooser: "Välj legitimeringsmetod" with the two SITHS eID methods."""
    services = services_of(request)

    def load() -> tuple[str, str]:
        with services.database.session() as session:
            pending = load_pending_login(
                session, ref, request.cookies.get(BROWSER_COOKIE), expected_state="pending"
            )
            return pending.id, pending.client_name

    try:
        reference, client_name = await run_in_threadpool(load)
    except LoginFailed as exc:
        return await refuse(request, exc)
    return render_page(
        request,
        "idp/login.html",
        {
            "client_name": client_name,
            "this_device_url": f"{services.settings.cert_login_url}/cert-login?ref={reference}",
            "reference": reference,
        },
    )


@router.get("/login/continue")
async def continue_login(request: Request, ref: str = "") -> Response:
    """After a method succeeded: ask for a tjänste-id if there are several, else finish."""
    services = services_of(request)
    browser = request.cookies.get(BROWSER_COOKIE)

    def load() -> tuple[str, list[dict]]:
        with services.database.session() as session:
            try:
                pending = load_pending_login(
                    session, ref, browser, expected_state=("choosing", "completed")
                )
            except LoginFailed as exc:
                if exc.reason != "login_wrong_step":
                    raise
                return "finish", []
            if pending.state == "completed":
                return "finish", []  # finish_login may give the lost answer again
            return "choose", list((pending.authentication or {}).get("candidates", []))

    try:
        step, candidates = await run_in_threadpool(load)
    except LoginFailed as exc:
        return await refuse(request, exc)
    if step == "choose":
        return render_page(
            request, "idp/choose_hsa_id.html", {"reference": ref, "candidates": candidates}
        )
    return await finish_login(request, ref)


@router.post("/login/choose")
async def choose_service_id(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=5)
    reference = str(form.get("ref", ""))
    hsa_id = str(form.get("hsa_id", ""))
    services = services_of(request)
    browser = request.cookies.get(BROWSER_COOKIE)

    def choose() -> None:
        with services.database.session() as session:
            pending = load_pending_login(session, reference, browser, expected_state="choosing")
            choose_hsa_id(session, pending, hsa_id)

    try:
        await run_in_threadpool(choose)
    except LoginFailed as exc:
        retry = f"/login/continue?ref={reference}" if exc.reason == "hsa_id_not_offered" else None
        return await refuse(request, exc, retry_url=retry)
    return RedirectResponse(f"/login/continue?ref={reference}", status_code=303)


async def finish_login(request: Request, reference: str) -> Response:
    """Complete the pending login once, start the SSO session and answer the application.

    The browser that completed the login may come back within the repeat window (see
    :data:`idp.login.pending.REPEAT_WINDOW`) and get a fresh answer to the same request,
    unless the login's SSO session was logged out meanwhile.
    """
    services = services_of(request)
    browser = request.cookies.get(BROWSER_COOKIE)

    def complete() -> tuple[str, dict, Authentication, str, bool]:
        with services.database.session() as session:
            pending = load_pending_login(
                session, reference, browser, expected_state=("authenticated", "completed")
            )
            if pending.state == "completed":
                # The answer was lost (node died after committing, or a reload). Replace the
                # login's SSO session: its cookie may never have arrived. None left means a
                # logout ended it, and answering again would log the user back in.
                authentication = repeat_completed_login(pending)
                key = sso_session_key(authentication)
                if not end_sso_sessions_by_key(session, authentication.hsa_id, key):
                    raise LoginFailed("login_already_completed", "its SSO session has ended")
                outcome = "repeated"
            else:
                authentication = complete_pending_login(session, pending)
                outcome = "success"
            sso_token = start_sso_session(
                session, authentication, services.settings.sso_session_ttl_seconds
            )
            record_audit_event(
                session,
                "login",
                outcome=outcome,
                hsa_id=authentication.hsa_id,
                client_id=pending.client_id,
                method=authentication.method,
            )
            state = dict(pending.protocol_state)
            return pending.protocol, state, authentication, sso_token, outcome == "repeated"

    try:
        protocol, state, authentication, sso_token, repeated = await run_in_threadpool(complete)
    except LoginFailed as exc:
        return await refuse(request, exc)
    response = await services.responders[protocol](
        request, state, authentication, repeated=repeated
    )
    set_cookie(response, SSO_COOKIE, sso_token, None)
    return response

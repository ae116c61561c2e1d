"""The login pages on the IdP's main origin: choose a method, choose a tjänste-id, finish."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from idp.audit import record_audit_event
from idp.authn import Authentication
from idp.login.errors import LoginFailed, LoginReason
from idp.login.pending import (
    BROWSER_COOKIE,
    PendingState,
    cancel_pending_login,
    choose_hsa_id,
    complete_pending_login,
    load_pending_login,
    repeat_completed_login,
)
from idp.login.sso import SSO_COOKIE, end_sso_sessions_by_key, sso_session_key, start_sso_session
from idp.services import services_of
from idp.store.models import PendingLogin
from idp.web.refusals import refuse
from idp.web.render import error_page, render_page, set_cookie

router = APIRouter()
# The states in which /login/continue finishes a login: once, or again within the repeat window.
_FINISHABLE = (PendingState.AUTHENTICATED, PendingState.COMPLETED)


@router.get("/login")
async def choose_method(request: Request, ref: str = "") -> Response:
    """The chooser: "Välj legitimeringsmetod" with the two SITHS eID methods."""
    services = services_of(request)

    def load() -> tuple[str, str]:
        with services.database.session() as session:
            pending = load_pending_login(
                session,
                ref,
                request.cookies.get(BROWSER_COOKIE),
                expected_state=PendingState.PENDING,
            )
            return pending.id, pending.client_name

    try:
        reference, client_name = await run_in_threadpool(load)
    except LoginFailed as exc:
        return await refuse(request, exc, reference=ref)
    return render_page(
        request,
        "idp/login.html",
        {
            "client_name": client_name,
            "this_device_url": f"{services.settings.cert_login_url}/cert-login?ref={reference}",
            "reference": reference,
        },
    )


@dataclass(frozen=True)
class _Finished:
    """A login completed (or repeated) in the database, for its protocol to answer."""

    protocol: str
    protocol_state: dict
    authentication: Authentication
    sso_token: str
    repeated: bool


@router.get("/login/continue")
async def continue_login(request: Request, ref: str = "") -> Response:
    """After a method succeeded: ask for a tjänste-id if there are several, else finish.

    Finishing happens in the same transaction (and worker thread hop) that read the pending
    login, rather than reading it again in a second one.
    """
    services = services_of(request)
    browser = request.cookies.get(BROWSER_COOKIE)

    def choose_or_finish() -> list[dict] | _Finished:
        with services.database.session() as session:
            # Still "pending" (no method has succeeded) is refused as login_wrong_step.
            pending = load_pending_login(
                session, ref, browser, expected_state=(PendingState.CHOOSING, *_FINISHABLE)
            )
            if pending.state == PendingState.CHOOSING:
                return list((pending.authentication or {}).get("candidates", []))
            return _finish(session, services.settings.sso_session_ttl_seconds, pending)

    try:
        outcome = await run_in_threadpool(choose_or_finish)
    except LoginFailed as exc:
        return await refuse(request, exc, reference=ref)
    if isinstance(outcome, list):
        return render_page(
            request, "idp/choose_hsa_id.html", {"reference": ref, "candidates": outcome}
        )
    response = await services.responders[outcome.protocol](
        request, outcome.protocol_state, outcome.authentication, repeated=outcome.repeated
    )
    set_cookie(response, SSO_COOKIE, outcome.sso_token, None)
    return response


@router.post("/login/choose")
async def choose_service_id(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=5)
    reference = str(form.get("ref", ""))
    hsa_id = str(form.get("hsa_id", ""))
    services = services_of(request)
    browser = request.cookies.get(BROWSER_COOKIE)

    def choose() -> None:
        with services.database.session() as session:
            pending = load_pending_login(
                session, reference, browser, expected_state=PendingState.CHOOSING
            )
            choose_hsa_id(session, pending, hsa_id)

    try:
        await run_in_threadpool(choose)
    except LoginFailed as exc:
        retry = (
            f"/login/continue?ref={reference}"
            if exc.reason == LoginReason.HSA_ID_NOT_OFFERED
            else None
        )
        return await refuse(request, exc, reference=reference, retry_url=retry)
    return RedirectResponse(f"/login/continue?ref={reference}", status_code=303)


@router.post("/login/cancel")
async def cancel(request: Request) -> Response:
    """The user gives up (on the chooser or the choice of tjänste-id): the login ends."""
    form = await request.form(max_files=0, max_fields=5)
    return await cancel_login(request, str(form.get("ref", "")))


async def cancel_login(
    request: Request,
    reference: str,
    also: Callable[[Session, PendingLogin], None] | None = None,
) -> Response:
    """End this browser's login ``reference`` as cancelled (running ``also`` in the same
    transaction, e.g. to end an app order), audit it, and show the page with the way back to
    the application carrying its protocol's cancel answer."""
    services = services_of(request)
    browser = request.cookies.get(BROWSER_COOKIE)

    def end() -> tuple[str, dict]:
        with services.database.session() as session:
            pending = load_pending_login(
                session,
                reference,
                browser,
                expected_state=(PendingState.PENDING, PendingState.CHOOSING),
            )
            if also is not None:
                also(session, pending)
            back_state = (pending.protocol, dict(pending.protocol_state))
            cancel_pending_login(session, pending)
            record_audit_event(
                session,
                "login",
                outcome="cancelled",
                reason="user_cancelled",
                client_id=pending.client_id,
            )
            return back_state

    try:
        protocol, protocol_state = await run_in_threadpool(end)
    except LoginFailed as exc:
        return await refuse(request, exc, reference=reference)
    responder = services.failure_responders.get(protocol)
    back = None
    if responder is not None:
        back = await run_in_threadpool(
            lambda: responder(protocol_state, cancelled=True, detail="the user cancelled")
        )
    return error_page(request, "user_cancelled", back_to_service=back)


def _finish(session: Session, sso_ttl_seconds: int, pending: PendingLogin) -> _Finished:
    """Complete the pending login once, start the SSO session and audit it.

    ``pending`` is this browser's, unexpired and in one of :data:`_FINISHABLE` (checked by
    :func:`load_pending_login` in the same transaction). The browser that completed the login
    may come back within the repeat window (see :data:`idp.login.pending.REPEAT_WINDOW`) and
    get a fresh answer to the same request, unless the login's SSO session was logged out
    meanwhile.
    """
    if pending.state == PendingState.COMPLETED:
        # The answer was lost (node died after committing, or a reload). Replace the login's
        # SSO session: its cookie may never have arrived. None left means a logout ended it,
        # and answering again would log the user back in.
        authentication = repeat_completed_login(pending)
        key = sso_session_key(authentication)
        if not end_sso_sessions_by_key(session, authentication.hsa_id, key):
            raise LoginFailed(LoginReason.LOGIN_ALREADY_COMPLETED, "its SSO session has ended")
        outcome = "repeated"
    else:
        authentication = complete_pending_login(session, pending)
        outcome = "success"
    sso_token = start_sso_session(session, authentication, sso_ttl_seconds)
    record_audit_event(
        session,
        "login",
        outcome=outcome,
        hsa_id=authentication.hsa_id,
        client_id=pending.client_id,
        method=authentication.method,
    )
    return _Finished(
        pending.protocol,
        dict(pending.protocol_state),
        authentication,
        sso_token,
        outcome == "repeated",
    )

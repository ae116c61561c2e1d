"""The login pages on the IdP's main origin: choose a method, choose a tjänste-id, finish.

Adapters: each parses the request, calls a step of :class:`idp.login.steps.LoginSteps` and
renders its answer or its refusal. :class:`LoginPages` is built once at start-up with the
:class:`idp.services.Services` it serves (:func:`idp.app.create_app`).
"""

from __future__ import annotations

import functools

from fastapi import APIRouter
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from idp.login.errors import LoginFailed, LoginReason
from idp.login.pending import BROWSER_COOKIE
from idp.login.sso import SSO_COOKIE
from idp.login.steps import CancelAlso, FinishedLogin
from idp.services import BuildAnswer, Services
from idp.web.refusals import refuse
from idp.web.render import error_page, render_page, set_cookie


class LoginPages:
    """``/login`` and its steps, wired to ``services`` (:meth:`router`)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/login", self.choose_method, methods=["GET"])
        router.add_api_route("/login/continue", self.continue_login, methods=["GET"])
        router.add_api_route("/login/choose", self.choose_service_id, methods=["POST"])
        router.add_api_route("/login/cancel", self.cancel, methods=["POST"])
        return router

    async def choose_method(self, request: Request, ref: str = "") -> Response:
        """The chooser: "Välj legitimeringsmetod" with the two SITHS eID methods."""
        services = self.services
        browser = request.cookies.get(BROWSER_COOKIE)
        try:
            waiting = await run_in_threadpool(services.steps.waiting_login, ref, browser)
        except LoginFailed as exc:
            return await refuse(services, request, exc, reference=ref)
        return chooser_page(
            request, services.settings.cert_login_url, waiting.client_name, waiting.reference
        )

    async def continue_login(self, request: Request, ref: str = "") -> Response:
        """After a method succeeded: ask for a tjänste-id if there are several, else finish."""
        services = self.services
        browser = request.cookies.get(BROWSER_COOKIE)
        try:
            outcome = await run_in_threadpool(self._choose_or_answer, ref, browser)
        except LoginFailed as exc:
            return await refuse(services, request, exc, reference=ref)
        if isinstance(outcome, list):
            return render_page(
                request, "idp/choose_hsa_id.html", {"reference": ref, "candidates": outcome}
            )
        finished, prepared = outcome
        return answer_finished_login(services, request, finished, prepared)

    def _choose_or_answer(
        self, reference: str, browser: str | None
    ) -> list[dict] | tuple[FinishedLogin, object]:
        """The tjänste-ids to choose from, or the finished login with its protocol's answer
        (settled in the finishing transaction, built after it, both in one worker thread)."""
        outcome = self.services.steps.choose_or_finish(
            reference, browser, functools.partial(settle_answer, self.services)
        )
        if isinstance(outcome, list):
            return outcome
        finished, build = outcome
        return finished, build()

    async def choose_service_id(self, request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=5)
        reference = str(form.get("ref", ""))
        hsa_id = str(form.get("hsa_id", ""))
        services = self.services
        browser = request.cookies.get(BROWSER_COOKIE)
        try:
            await run_in_threadpool(services.steps.choose_service_id, reference, browser, hsa_id)
        except LoginFailed as exc:
            retry = (
                f"/login/continue?ref={reference}"
                if exc.reason == LoginReason.HSA_ID_NOT_OFFERED
                else None
            )
            return await refuse(services, request, exc, reference=reference, retry_url=retry)
        return RedirectResponse(f"/login/continue?ref={reference}", status_code=303)

    async def cancel(self, request: Request) -> Response:
        """The user gives up (on the chooser or the choice of tjänste-id): the login ends."""
        form = await request.form(max_files=0, max_fields=5)
        return await cancel_login(self.services, request, str(form.get("ref", "")))


def chooser_page(
    request: Request, cert_login_url: str, client_name: str, reference: str
) -> HTMLResponse:
    """The chooser of pending login ``reference``, also as the answer to the request that
    started the login (no redirect in between): its own address, for the language switch, is
    ``/login?ref=``."""
    return render_page(
        request,
        "idp/login.html",
        {
            "client_name": client_name,
            "this_device_url": f"{cert_login_url}/cert-login?ref={reference}",
            "reference": reference,
        },
        address=f"/login?ref={reference}",
    )


def answer_finished_login(
    services: Services, request: Request, finished: FinishedLogin, prepared: object
) -> Response:
    """The protocol's answer to a finished login (a SAML Response form, an OIDC redirect), as
    built in the blocking call that finished the login (:func:`settle_answer`), with the
    browser's SSO cookie. Used by ``/login/continue`` and by ``/cert-login`` when the card
    finished the login there: the cookie is host-only and cookies do not tell ports apart, so
    both origins set the same one."""
    response = services.responders[finished.protocol].render(request, prepared)
    set_cookie(response, SSO_COOKIE, finished.sso_token, None)
    return response


def settle_answer(services: Services, session: Connection, finished: FinishedLogin) -> BuildAnswer:
    """In the transaction that finished ``finished``: its protocol's
    :meth:`~idp.services.Responder.settle`; call what it returns once that has committed."""
    return services.responders[finished.protocol].settle(session, finished)


async def cancel_login(
    services: Services, request: Request, reference: str, also: CancelAlso | None = None
) -> Response:
    """End this browser's login ``reference`` as cancelled (running ``also`` in the same
    transaction, e.g. to end an app order), audit it, and show the page with the way back to
    the application carrying its protocol's cancel answer."""
    browser = request.cookies.get(BROWSER_COOKIE)
    try:
        cancelled = await run_in_threadpool(services.steps.cancel, reference, browser, also)
    except LoginFailed as exc:
        return await refuse(services, request, exc, reference=reference)
    responder = services.failure_responders.get(cancelled.protocol)
    back = None
    if responder is not None:
        back = await run_in_threadpool(
            lambda: responder(cancelled.protocol_state, cancelled=True, detail="the user cancelled")
        )
    return error_page(request, "user_cancelled", back_to_service=back)

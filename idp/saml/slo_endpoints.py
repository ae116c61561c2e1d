"""HTTP endpoints of SAML Single Logout, under ``/saml``.

- ``/saml/slo/redirect`` (GET) and ``/saml/slo/post`` (POST): an SP's LogoutRequest ends the
  browser's SSO session (and the sessions in which that SP knows the user by that NameID),
  then the session's other SPs are logged out in turn and the SP gets a signed
  LogoutResponse; an SP's LogoutResponse to the IdP's LogoutRequest moves the run on.
- ``/saml/logout`` (GET asks, POST does): the user logs out at the IdP; the SSO session ends
  and every SP that took part gets a LogoutRequest.

Adapters only: each reads the binding or form, calls one use case of
:class:`idp.saml.slo.SamlSingleLogout` and renders what it returns. A refused message gets the
error page and no SAML answer (its sender is not trusted). :class:`SamlLogoutEndpoints` is built
once at start-up with the use cases it serves (:func:`idp.app.create_app`).
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import APIRouter
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from idp.login.sso import SSO_COOKIE
from idp.saml.bindings import (
    MAX_PARAMETERS,
    SAML_REQUEST,
    SAML_RESPONSE,
    BindingMessage,
    BindingMessageRejected,
    read_post_form,
    read_redirect_query,
)
from idp.saml.logout import LogoutRejected, Outgoing
from idp.saml.slo import LogoutDone, SamlSingleLogout
from idp.web.messages import Topic, page_for
from idp.web.render import clear_cookie, error_page, render_page

_MESSAGES = (SAML_REQUEST, SAML_RESPONSE)


class SamlLogoutEndpoints:
    """The Single Logout endpoints, wired to ``slo`` (:meth:`router`)."""

    def __init__(self, slo: SamlSingleLogout) -> None:
        self.slo = slo

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/saml")
        router.add_api_route("/slo/redirect", self.single_logout_redirect, methods=["GET"])
        router.add_api_route("/slo/post", self.single_logout_post, methods=["POST"])
        router.add_api_route("/logout", self.logout_page, methods=["GET"])
        router.add_api_route("/logout", self.logout, methods=["POST"])
        return router

    async def single_logout_redirect(self, request: Request) -> Response:
        try:
            received = read_redirect_query(request.scope.get("query_string", b""), _MESSAGES)
        except BindingMessageRejected as exc:
            return await self._unreadable(request, exc)
        return await self._receive(request, BINDING_HTTP_REDIRECT, received)

    async def single_logout_post(self, request: Request) -> Response:
        try:
            form = await request.form(max_files=0, max_fields=MAX_PARAMETERS)
            received = read_post_form(form, _MESSAGES)
        except BindingMessageRejected as exc:
            return await self._unreadable(request, exc)
        return await self._receive(request, BINDING_HTTP_POST, received)

    async def logout_page(self, request: Request) -> Response:
        """IdP-initiated logout, step 1: show what will be logged out and ask (a link alone must
        not log anybody out)."""
        token = request.cookies.get(SSO_COOKIE)
        names = await run_in_threadpool(self.slo.services_to_log_out, token)
        if names is None:
            return render_page(request, "idp/saml_logout.html", {"state": "not_logged_in"})
        return render_page(
            request,
            "idp/saml_logout.html",
            {"state": "confirm", "services": names, "csrf": _logout_csrf(token)},
        )

    async def logout(self, request: Request) -> Response:
        """IdP-initiated logout, step 2: end the SSO session and log out its SPs."""
        form = await request.form(max_files=0, max_fields=5)
        token = request.cookies.get(SSO_COOKIE)
        if not token:
            return render_page(request, "idp/saml_logout.html", {"state": "not_logged_in"})
        if not hmac.compare_digest(str(form.get("csrf", "")), _logout_csrf(token)):
            # Not our confirmation form (a cross-site post): ask again instead.
            return RedirectResponse("/saml/logout", status_code=303)
        result = await run_in_threadpool(self.slo.log_out, token)
        return _forget_sso(_show(request, result))

    async def _receive(self, request: Request, binding: str, received: BindingMessage) -> Response:
        slo = self.slo
        try:
            if received.is_request:
                token = request.cookies.get(SSO_COOKIE)
                result = await run_in_threadpool(slo.receive_request, binding, received, token)
                return _forget_sso(_show(request, result))
            result = await run_in_threadpool(slo.receive_response, binding, received)
        except LogoutRejected as exc:
            return _refused(request, exc.reason)
        return _show(request, result)

    async def _unreadable(self, request: Request, exc: BindingMessageRejected) -> Response:
        """No logout message could be read off the binding: audited, and a page."""
        await run_in_threadpool(self.slo.audit_refusal, "saml.logout", exc)
        return _refused(request, exc.reason)


def _refused(request: Request, reason: str) -> Response:
    return error_page(request, reason, message=page_for(Topic.SAML_LOGOUT, reason))


def _show(request: Request, result: Outgoing | LogoutDone) -> Response:
    """Send the run's next message, or show the user the outcome."""
    if isinstance(result, LogoutDone):
        return render_page(
            request,
            "idp/saml_logout.html",
            {"state": "done", "confirmed": result.confirmed, "unconfirmed": result.unconfirmed},
        )
    if result.binding == BINDING_HTTP_REDIRECT:
        return RedirectResponse(result.url, status_code=303)
    return render_page(
        request, "idp/post_binding.html", {"action": result.url, "fields": result.fields}
    )


def _forget_sso(response: Response) -> Response:
    clear_cookie(response, SSO_COOKIE)
    return response


def _logout_csrf(sso_token: str | None) -> str:
    # Bound to the SSO cookie, which a cross-site page cannot read: only the IdP's own
    # confirmation form can carry the right value.
    return hashlib.sha256(f"saml-logout\x00{sso_token or ''}".encode()).hexdigest()

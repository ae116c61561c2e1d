"""HTTP endpoints of the OpenID Provider and its responder for finished logins.

Every authlib call blocks (database, signing), so each runs in a worker thread; the event loop
only reads requests and renders pages. Integrators get OAuth error codes (as redirects or JSON);
users get the IdP's Swedish/English error page when the client cannot be told.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import urllib.parse

from authlib.oauth2.rfc6749 import OAuth2Error
from fastapi import APIRouter
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from idp.audit import record_audit_event
from idp.login.sso import SSO_COOKIE
from idp.login.steps import FinishedLogin
from idp.oidc.authorization import (
    LoginNeeded,
    Refused,
    begin_authorization,
    failure_redirect,
    finish_authorization,
)
from idp.oidc.claims import PersonForClient
from idp.oidc.context import (
    AUTHORIZE_PATH,
    DISCOVERY_PATH,
    END_SESSION_PATH,
    JWKS_PATH,
    TOKEN_PATH,
    USERINFO_PATH,
)
from idp.oidc.discovery import provider_metadata
from idp.oidc.provider import OpenIDProvider
from idp.oidc.starlette_adapter import StarletteOAuth2Request, read_oauth2_request
from idp.services import BackToService, BuildAnswer, FailureResponder
from idp.web.json_response import JsonResponse
from idp.web.render import (
    browser_token,
    clear_cookie,
    error_page,
    render_page,
    set_browser_cookie,
)

CONFIRM_LOGOUT_PATH = f"{END_SESSION_PATH}/confirm"
INVALID_REQUEST = {"error": "invalid_request", "error_description": "Malformed request."}


class OidcEndpoints:
    """The OpenID Provider's HTTP endpoints, wired at start-up to the provider they serve
    (:meth:`router`); each handler parses the request, calls the provider, renders."""

    def __init__(self, provider: OpenIDProvider, *, pending_ttl_seconds: int) -> None:
        self.provider = provider
        self.pending_ttl_seconds = pending_ttl_seconds

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route(DISCOVERY_PATH, self.discovery, methods=["GET"])
        router.add_api_route(JWKS_PATH, self.jwks, methods=["GET"])
        router.add_api_route(AUTHORIZE_PATH, self.authorize, methods=["GET", "POST"])
        router.add_api_route(TOKEN_PATH, self.token, methods=["POST"])
        router.add_api_route(USERINFO_PATH, self.userinfo, methods=["GET", "POST"])
        router.add_api_route(END_SESSION_PATH, self.end_session, methods=["GET", "POST"])
        router.add_api_route(CONFIRM_LOGOUT_PATH, self.confirm_end_session, methods=["POST"])
        return router

    async def discovery(self, request: Request) -> Response:
        metadata = provider_metadata(self.provider.context)
        return JsonResponse(metadata, headers={"Cache-Control": "public, max-age=3600"})

    async def jwks(self, request: Request) -> Response:
        keys = self.provider.context.keys
        await run_in_threadpool(keys.refresh_if_changed)
        # Short caching: relying parties pick up a rollover's next key well before it signs.
        return JsonResponse(keys.public_jwks(), headers={"Cache-Control": "public, max-age=300"})

    async def authorize(self, request: Request) -> Response:
        provider = self.provider
        oauth2_request = await read_oauth2_request(request, provider.context.issuer)
        token, new_browser = browser_token(request)
        outcome = await run_in_threadpool(
            begin_authorization,
            provider,
            oauth2_request,
            browser_token=token,
            sso_token=request.cookies.get(SSO_COOKIE),
            pending_ttl_seconds=self.pending_ttl_seconds,
        )
        if isinstance(outcome, Refused):
            return error_page(request, outcome.reason)
        if isinstance(outcome, LoginNeeded):
            response: Response = RedirectResponse(
                f"/login?ref={outcome.reference}", status_code=303
            )
            if new_browser:
                set_browser_cookie(response, token)
            return response
        return outcome

    async def token(self, request: Request) -> Response:
        provider = self.provider
        oauth2_request = await read_oauth2_request(request, provider.context.issuer)

        def exchange() -> Response:
            provider.context.keys.refresh_if_changed()
            try:
                response: Response = provider.create_token_response(oauth2_request)
            except ValueError:
                # authlib refuses to build an error description from unprintable input.
                response = JsonResponse(INVALID_REQUEST, status_code=400)
            _audit_token(provider, oauth2_request, response)
            return response

        return await run_in_threadpool(exchange)

    async def userinfo(self, request: Request) -> Response:
        provider = self.provider
        oauth2_request = await read_oauth2_request(request, provider.context.issuer)
        response: Response = await run_in_threadpool(
            provider.create_endpoint_response, "userinfo", oauth2_request
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    async def end_session(self, request: Request) -> Response:
        """RP-initiated logout. Without an ``id_token_hint`` the user confirms first (anyone can
        link here, so an unconfirmed request must not log the user out)."""
        provider = self.provider
        oauth2_request = await read_oauth2_request(request, provider.context.issuer)
        try:
            validated = await run_in_threadpool(
                provider.validate_endpoint_request, "end_session", oauth2_request
            )
        except OAuth2Error as error:
            await run_in_threadpool(
                _audit, provider, "oidc.end_session", "rejected", str(error.error), ""
            )
            return error_page(request, "oidc_invalid_logout")
        if validated.needs_confirmation:
            client = validated.client
            return render_page(
                request,
                "idp/oidc_logout.html",
                {
                    "confirm": True,
                    "client_name": client.name if client is not None else "",
                    "action": CONFIRM_LOGOUT_PATH,
                    "fields": {"csrf": _logout_csrf(request.cookies.get(SSO_COOKIE))},
                },
            )
        response = await run_in_threadpool(
            provider.create_endpoint_response, "end_session", validated
        )
        return _logged_out(request, response)

    async def confirm_end_session(self, request: Request) -> Response:
        provider = self.provider
        form = await request.form(max_files=0, max_fields=5)
        sso_token = request.cookies.get(SSO_COOKIE)
        if not sso_token:
            return _logged_out(request, None)
        if not hmac.compare_digest(str(form.get("csrf", "")), _logout_csrf(sso_token)):
            # Not our confirmation form: a cross-site POST must not end the session.
            await run_in_threadpool(
                _audit, provider, "oidc.end_session", "rejected", "bad_confirmation", ""
            )
            return error_page(request, "oidc_invalid_logout")
        # A request without id_token_hint or redirect: authlib ends the session, nothing more.
        bare = StarletteOAuth2Request(
            "POST",
            provider.context.url(END_SESSION_PATH),
            {},
            query=[],
            form=[],
            cookies={SSO_COOKIE: sso_token},
        )
        await run_in_threadpool(provider.create_endpoint_response, "end_session", bare)
        return _logged_out(request, None)


class OidcLoginResponder:
    """The answer for ``protocol="oidc"``: redirect to the client with a code (a
    :class:`idp.services.Responder`)."""

    def __init__(self, provider: OpenIDProvider) -> None:
        self._provider = provider

    def settle(self, session: Connection, finished: FinishedLogin) -> BuildAnswer:
        # Nothing to keep with the login: authlib stores the authorization code through a
        # session of its own (idp.oidc.grants), in the builder, after the login has committed.
        return functools.partial(
            finish_authorization,
            self._provider,
            finished.protocol_state,
            finished.authentication,
            repeated=finished.repeated,
        )

    def render(self, request: Request, prepared: object) -> Response:
        if isinstance(prepared, Refused):
            return error_page(request, prepared.reason)
        if isinstance(prepared, Response):
            return prepared
        raise TypeError(f"not a prepared OIDC answer: {type(prepared).__name__}")


def oidc_failure_responder(provider: OpenIDProvider) -> FailureResponder:
    """The OIDC answer to a login that ended without success: back to the client's redirect
    URI with ``access_denied``, as a GET form (its query travels as the form's fields)."""

    def answer(protocol_state: dict, *, cancelled: bool, detail: str) -> BackToService | None:
        location = failure_redirect(provider, protocol_state, cancelled=cancelled)
        if location is None:
            return None
        base, _, query = location.partition("?")
        return BackToService(base, "get", dict(urllib.parse.parse_qsl(query)))

    return answer


def _logged_out(request: Request, redirect: Response | None) -> Response:
    response = redirect or render_page(request, "idp/oidc_logout.html", {"confirm": False})
    clear_cookie(response, SSO_COOKIE)
    return response


def _logout_csrf(sso_token: str | None) -> str:
    # Bound to the SSO cookie, which a cross-site page cannot read: only the IdP's own
    # confirmation form can carry the right value.
    return hashlib.sha256(f"oidc-logout\x00{sso_token or ''}".encode()).hexdigest()


def _audit_token(
    provider: OpenIDProvider, oauth2_request: StarletteOAuth2Request, response: Response
) -> None:
    """One audit event per token request; the error code and description, never a token."""
    client = oauth2_request.client
    client_id = client.client_id if client is not None else ""
    if response.status_code == 200:
        person = oauth2_request.user
        hsa_id = person.authentication.hsa_id if isinstance(person, PersonForClient) else ""
        _audit(provider, "oidc.token", "success", "", "", client_id=client_id, hsa_id=hsa_id)
        return
    try:
        body = json.loads(bytes(response.body))
    except ValueError:
        body = {}
    _audit(
        provider,
        "oidc.token",
        "rejected",
        str(body.get("error", "")),
        str(body.get("error_description", "")),
        client_id=client_id,
    )


def _audit(
    provider: OpenIDProvider,
    event: str,
    outcome: str,
    reason: str,
    detail: str,
    *,
    client_id: str = "",
    hsa_id: str = "",
) -> None:
    with provider.context.database.session() as session:
        record_audit_event(
            session,
            event,
            outcome=outcome,
            reason=reason[:64],
            client_id=client_id,
            hsa_id=hsa_id,
            detail=detail,
        )

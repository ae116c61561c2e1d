"""The authorization step: check the request, then answer from the SSO session or start a login.

Two entry points, both blocking (run them in a worker thread):

- :func:`begin_authorization` for ``/oidc/authorize``: a request that cannot be answered by
  redirect (unknown client, unregistered redirect URI, malformed parameters) becomes
  :class:`Refused`, shown to the user as the IdP's error page; any other error goes back to the
  client's redirect URI with its OAuth error code and the exact ``state``. A live SSO session
  (from a SAML login too) is used unless ``prompt=login`` or ``max_age`` asks for a fresh login;
  otherwise a pending login with ``protocol="oidc"`` is created (:class:`LoginNeeded`).
- :func:`finish_authorization` when that login has finished: validate again (the client may
  have been removed meanwhile) and redirect with a code.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidClientError, OAuth2Error
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from starlette.responses import Response

from idp.audit import record_audit_event
from idp.authn import Authentication
from idp.login.pending import create_pending_login
from idp.login.sso import find_sso_session
from idp.oidc.context import AUTHORIZE_PATH
from idp.oidc.grants import RedirectUriMismatch
from idp.oidc.provider import OpenIDProvider
from idp.oidc.starlette_adapter import StarletteOAuth2Request

# What a pending login remembers of the request, to rebuild it when the login has finished.
KEPT_PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "acr_values",
    "response_mode",
)
# Characters an error_description may hold (RFC 6749 5.2): authlib quotes some parameters in
# its error descriptions and raises ValueError for anything else, so refuse those up front.
_SAFE = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$")
_LIMITS = {
    "response_type": 64,
    "client_id": 128,
    "redirect_uri": 2000,
    "scope": 200,
    "code_challenge_method": 16,
    "prompt": 64,
    "response_mode": 32,
    "acr_values": 400,
}
MAX_STATE_LENGTH = 2000


@dataclass(frozen=True)
class Refused:
    """Nothing can be sent to the client: the user sees the error page for ``reason``."""

    reason: str
    detail: str


@dataclass(frozen=True)
class LoginNeeded:
    """The user must log in: send the browser to the chooser for this pending login."""

    reference: str


AuthorizationOutcome = Response | Refused | LoginNeeded


def begin_authorization(
    provider: OpenIDProvider,
    request: StarletteOAuth2Request,
    *,
    browser_token: str,
    sso_token: str | None,
    pending_ttl_seconds: int,
) -> AuthorizationOutcome:
    """Answer an authorization request (see the module docstring)."""
    if problem := _malformed(request.payload.data):
        return _refuse(provider, request, "oidc_invalid_request", problem)
    database = provider.context.database
    with database.session() as session:
        sso = find_sso_session(session, sso_token)
    fresh = sso is not None and _fresh_login_required(request.payload.data, sso)
    end_user = None if fresh else sso
    try:
        grant = provider.get_consent_grant(request, end_user)
    except OAuth2Error as error:
        return _rejected(provider, request, error)
    except ValueError:
        # authlib would not put some input into an error description; _malformed should have
        # caught it, this is the backstop.
        return _refuse(provider, request, "oidc_invalid_request", "unprintable parameter")
    client = request.client
    if end_user is None or grant.prompt == "login":
        with database.session() as session:
            pending = create_pending_login(
                session,
                browser_token=browser_token,
                protocol="oidc",
                protocol_state=_kept(request.payload.data),
                client_id=client.client_id,
                client_name=client.name,
                force_authn=fresh or "login" in _prompts(request.payload.data),
                ttl_seconds=pending_ttl_seconds,
            )
            return LoginNeeded(pending.id)
    with database.session() as session:
        record_audit_event(
            session,
            "login",
            outcome="success",
            reason="sso_session",
            hsa_id=end_user.hsa_id,
            client_id=client.client_id,
            method="sso",
        )
    return _issue_code(provider, grant, str(grant.redirect_uri), end_user)


def finish_authorization(
    provider: OpenIDProvider,
    protocol_state: Mapping[str, str],
    authentication: Authentication,
    *,
    repeated: bool = False,
) -> Response | Refused:
    """Redirect to the client with a code for ``authentication`` (a finished pending login).

    ``repeated``: the login was completed before and its answer lost; the request's nonce
    then counts as used only if a code for another login carried it.
    """
    request = rebuild_request(provider, protocol_state)
    if repeated:
        request.repeated_authentication = authentication  # read by OpenIDCodeFlow.exists_nonce
    try:
        grant = provider.get_authorization_grant(request)
        redirect_uri = grant.validate_authorization_request()
    except OAuth2Error as error:
        error.state = request.payload.state
        return _rejected(provider, request, error)
    return _issue_code(provider, grant, str(redirect_uri), authentication)


def failure_redirect(
    provider: OpenIDProvider, protocol_state: Mapping[str, str], *, cancelled: bool
) -> str | None:
    """Where to send the browser of a login that ended without success: the client's validated
    redirect URI with ``error=access_denied`` (RFC 6749 4.1.2.1) and the request's state; None if
    the stored request no longer validates (the client was removed, say)."""
    request = rebuild_request(provider, protocol_state)
    try:
        grant = provider.get_authorization_grant(request)
        redirect_uri = grant.validate_authorization_request()
    except OAuth2Error:
        return None
    description = "The user cancelled the login" if cancelled else "The login failed"
    error = AccessDeniedError(
        description=description, redirect_uri=redirect_uri, state=request.payload.state
    )
    response: Response = provider.handle_error_response(request, error)
    return response.headers.get("location")


def rebuild_request(
    provider: OpenIDProvider, protocol_state: Mapping[str, str]
) -> StarletteOAuth2Request:
    parameters = [(key, str(value)) for key, value in protocol_state.items()]
    query = urllib.parse.urlencode(parameters)
    uri = f"{provider.context.url(AUTHORIZE_PATH)}?{query}"
    return StarletteOAuth2Request("GET", uri, {}, query=parameters, form=[])


def _issue_code(
    provider: OpenIDProvider,
    grant: AuthorizationCodeGrant,
    redirect_uri: str,
    authentication: Authentication,
) -> Response:
    try:
        status, body, headers = grant.create_authorization_response(redirect_uri, authentication)
    except OAuth2Error as error:
        error.state = grant.request.payload.state
        return _rejected_with_redirect(provider, grant.request, error)
    response: Response = provider.handle_response(status, body, headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def _rejected(
    provider: OpenIDProvider, request: StarletteOAuth2Request, error: OAuth2Error
) -> Response | Refused:
    if error.redirect_uri:
        return _rejected_with_redirect(provider, request, error)
    reason = _page_reason(provider, request, error)
    return _refuse(provider, request, reason, error.get_error_description())


def _rejected_with_redirect(
    provider: OpenIDProvider, request: StarletteOAuth2Request, error: OAuth2Error
) -> Response:
    _audit_rejection(provider, request, str(error.error), error.get_error_description() or "")
    response: Response = provider.handle_error_response(request, error)
    return response


def _refuse(
    provider: OpenIDProvider, request: StarletteOAuth2Request, reason: str, detail: str | None
) -> Refused:
    _audit_rejection(provider, request, reason, detail or "")
    return Refused(reason, detail or "")


def _audit_rejection(
    provider: OpenIDProvider, request: StarletteOAuth2Request, reason: str, detail: str
) -> None:
    with provider.context.database.session() as session:
        record_audit_event(
            session,
            "oidc.authorize",
            outcome="rejected",
            reason=reason[:64],
            client_id=str(request.payload.client_id or "")[:128],
            detail=detail,
        )


def _page_reason(
    provider: OpenIDProvider, request: StarletteOAuth2Request, error: OAuth2Error
) -> str:
    """The user-facing reason when the client cannot be told."""
    if isinstance(error, InvalidClientError):
        return "oidc_unknown_client"
    if isinstance(error, RedirectUriMismatch):
        return "oidc_redirect_uri_mismatch"
    client_id = request.payload.client_id
    client = provider.query_client(client_id) if client_id else None
    if client is None:
        return "oidc_unknown_client"
    redirect_uri = request.payload.redirect_uri
    if not redirect_uri or not client.check_redirect_uri(redirect_uri):
        return "oidc_redirect_uri_mismatch"
    return "oidc_invalid_request"


def _malformed(data: Mapping[str, Any]) -> str:
    for name, limit in _LIMITS.items():
        value = data.get(name)
        if value is not None and (len(value) > limit or not _SAFE.match(value)):
            return f"malformed {name}"
    if len(data.get("state") or "") > MAX_STATE_LENGTH:
        return "state too long"
    return ""


def _prompts(data: Mapping[str, Any]) -> list[str]:
    return str(data.get("prompt") or "").split()


def _fresh_login_required(data: Mapping[str, Any], sso: Authentication) -> bool:
    """``prompt=login``, or ``max_age`` seconds or more since the SSO session's login."""
    if "login" in _prompts(data):
        return True
    max_age = str(data.get("max_age") or "")
    if max_age.isdigit() and len(max_age) <= 9:
        return time.time() - sso.authn_instant >= int(max_age)
    return False


def _kept(data: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(data[name]) for name in KEPT_PARAMETERS if data.get(name) is not None}

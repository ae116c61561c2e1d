"""Mock Treserva's OpenID Connect login, beside the SAML one, with authlib's client.

The IdP is found by discovery; the ID token is validated by authlib against the IdP's JWKS
(issuer, audience, nonce, expiry), PKCE S256 is used, and the HSA-ID comes from the
``employeeHsaId`` claim. The login lands in the session in the same shape as a SAML login, so
the rest of Treserva does not care which protocol was used.
"""

from __future__ import annotations

import logging
import ssl

from authlib.integrations.starlette_client import OAuth, OAuthError
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sp_demo.config import Settings
from sp_demo.pages import LOGIN_KEY, WINDOWS_KEY, error_page, settings_of
from sp_demo.saml import LoginResult

logger = logging.getLogger("sp_demo")
router = APIRouter(prefix="/oidc")
CLIENT_NAME = "atkomsttjansten"
# Marks a session's login as OpenID Connect, so logout ends it at the IdP's end-session
# endpoint instead of by SAML Single Logout.
OIDC_NAME_ID_FORMAT = "oidc:sub"


def build_oauth(settings: Settings) -> OAuth | None:
    """An authlib registry with the IdP as a client, or None if no secret is configured."""
    if not settings.oidc_client_secret:
        return None
    context = ssl.create_default_context(cafile=str(settings.tls_ca_file))
    oauth = OAuth()
    oauth.register(
        CLIENT_NAME,
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        server_metadata_url=f"{settings.oidc_issuer}/.well-known/openid-configuration",
        code_challenge_method="S256",
        client_kwargs={"scope": "openid profile", "verify": context, "timeout": 10},
    )
    return oauth


def _client(request: Request):  # type: ignore[no-untyped-def]
    oauth: OAuth | None = request.app.state.oauth
    return None if oauth is None else oauth.create_client(CLIENT_NAME)


@router.get("/login")
async def oidc_login(request: Request) -> Response:
    client = _client(request)
    if client is None:
        return error_page(request, "not_found")
    settings = settings_of(request)
    try:
        return await client.authorize_redirect(request, f"{settings.base_url}/oidc/callback")
    except Exception as exc:
        logger.warning("cannot start an OIDC login: %r", exc)
        return error_page(request, "idp_unavailable")


@router.get("/callback")
async def oidc_callback(request: Request) -> Response:
    client = _client(request)
    if client is None:
        return error_page(request, "not_found")
    try:
        token = await client.authorize_access_token(request)
    except OAuthError as exc:
        logger.warning("OIDC login refused: %s", exc.error)
        return error_page(request, "invalid")
    claims = token.get("userinfo") or {}
    hsa_id = claims.get("employeeHsaId")
    if not isinstance(hsa_id, str) or not hsa_id:
        return error_page(request, "attributes")
    result = LoginResult(
        hsa_id=hsa_id,
        given_name=str(claims.get("given_name", "")),
        surname=str(claims.get("family_name", "")),
        name_id=str(claims.get("sub", "")),
        name_id_format=OIDC_NAME_ID_FORMAT,
        session_index="",
        authn_context_class_ref=str(claims.get("acr", "")),
        idp_entity_id=str(claims.get("iss", "")),
        authn_instant=str(claims.get("auth_time", "")),
    )
    request.session.pop(WINDOWS_KEY, None)
    request.session[LOGIN_KEY] = result.to_dict()
    request.session["oidc_id_token"] = token.get("id_token", "")
    logger.info("login: %s via OpenID Connect", hsa_id)
    return RedirectResponse("/me", status_code=303)

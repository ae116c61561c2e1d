"""The portal's login: an OpenID Connect client of the IdP, with authlib's client.

Discovery, PKCE S256, the ID token checked by authlib against the IdP's JWKS (issuer,
audience, nonce, expiry); the HSA-ID comes from the ``employeeHsaId`` claim. The login lands in
the session as ``{"hsa_id", "name"}``; roles are the portal's own (:mod:`portal.web`).
"""

from __future__ import annotations

import logging
import ssl

from authlib.integrations.starlette_client import OAuth, OAuthError
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from portal.config import Settings
from portal.refusals import Refused
from portal.web import LOGIN_KEY, refusal_page, settings_of

logger = logging.getLogger("portal")
router = APIRouter()
CLIENT_NAME = "atkomsttjansten"


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
async def login(request: Request) -> Response:
    client = _client(request)
    if client is None:
        return refusal_page(request, Refused("login_not_configured"))
    settings = settings_of(request)
    try:
        return await client.authorize_redirect(request, f"{settings.base_url}/oidc/callback")
    except Exception as exc:
        logger.warning("cannot start an OIDC login: %r", exc)
        return refusal_page(request, Refused("idp_unavailable"))


@router.get("/oidc/callback")
async def callback(request: Request) -> Response:
    client = _client(request)
    if client is None:
        return refusal_page(request, Refused("login_not_configured"))
    try:
        token = await client.authorize_access_token(request)
    except OAuthError as exc:
        logger.warning("OIDC login refused: %s", exc.error)
        return refusal_page(request, Refused("login_failed", exc.error or ""))
    claims = token.get("userinfo") or {}
    hsa_id = claims.get("employeeHsaId")
    if not isinstance(hsa_id, str) or not hsa_id:
        return refusal_page(request, Refused("login_failed", "no employeeHsaId"))
    name = " ".join(str(claims.get(c, "")) for c in ("given_name", "family_name")).strip()
    request.session.clear()
    request.session[LOGIN_KEY] = {"hsa_id": hsa_id, "name": name}
    logger.info("login: %s via OpenID Connect", hsa_id)
    return RedirectResponse("/", status_code=303)


@router.get("/logout")
async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/", status_code=303)

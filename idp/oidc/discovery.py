"""OpenID Provider Metadata (OpenID Connect Discovery 1.0 section 3), said once, here."""

from __future__ import annotations

from typing import Any

from idp.oidc.claims import ACR_VALUES, SCOPES, USER_CLAIMS
from idp.oidc.clients import AUTH_METHODS, CLIENT_ASSERTION_ALGS, ID_TOKEN_ALGS
from idp.oidc.context import (
    AUTHORIZE_PATH,
    END_SESSION_PATH,
    JWKS_PATH,
    TOKEN_PATH,
    USERINFO_PATH,
    ProviderContext,
)


def provider_metadata(context: ProviderContext) -> dict[str, Any]:
    """What a relying party needs to find and trust the endpoints and what they accept."""
    return {
        "issuer": context.issuer,
        "authorization_endpoint": context.url(AUTHORIZE_PATH),
        "token_endpoint": context.url(TOKEN_PATH),
        "userinfo_endpoint": context.url(USERINFO_PATH),
        "jwks_uri": context.url(JWKS_PATH),
        "end_session_endpoint": context.url(END_SESSION_PATH),
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": list(ID_TOKEN_ALGS),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGS),
        "code_challenge_methods_supported": ["S256"],
        "acr_values_supported": list(ACR_VALUES),
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "at_hash",
            *USER_CLAIMS,
        ],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "ui_locales_supported": ["sv", "en"],
    }

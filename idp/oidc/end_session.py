"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) on authlib's endpoint class.

The IdP's SSO session is the browser's: ending it logs the browser out of every client that
relies on it, SAML ones included, which is what a user pressing "logga ut" expects.
"""

from __future__ import annotations

from typing import cast

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oidc.rpinitiated import EndSessionEndpoint, EndSessionRequest
from joserfc.jwk import KeySet, KeySetSerialization

from idp.login.sso import SSO_COOKIE, end_sso_session
from idp.oidc.context import ProviderContext
from idp.oidc.starlette_adapter import StarletteOAuth2Request, repeated_parameters


class EndSession(EndSessionEndpoint):
    """Ends the SSO session named by the request's cookie. A ``post_logout_redirect_uri`` is
    followed only if registered for the client and vouched for by an ``id_token_hint`` this IdP
    signed (authlib's rules); otherwise the caller shows its own page."""

    def __init__(self, context: ProviderContext) -> None:
        super().__init__()
        self.context = context

    def validate_request(self, request: OAuth2Request) -> EndSessionRequest:
        """authlib's checks, refusing a repeated parameter first. Raises only
        ``InvalidRequestError``: authlib quotes the ``id_token_hint``'s header in its error
        text, and an OAuth error description may not hold every character it might contain
        (``ValueError`` then), so that becomes a plain refusal too."""
        if repeated_parameters(request):
            raise InvalidRequestError("A parameter is repeated.")
        try:
            validated: EndSessionRequest = super().validate_request(request)
        except ValueError as error:
            raise InvalidRequestError("The id_token_hint is not valid.") from error
        return validated

    def get_server_jwks(self) -> KeySet:
        return KeySet.import_key_set(cast(KeySetSerialization, self.context.keys.public_jwks()))

    def end_session(self, end_session_request: EndSessionRequest) -> None:
        request = end_session_request.request
        token = (
            request.cookies.get(SSO_COOKIE) if isinstance(request, StarletteOAuth2Request) else None
        )
        with self.context.database.session() as session:
            end_sso_session(session, token)

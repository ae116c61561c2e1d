"""The userinfo endpoint (OpenID Connect Core 5.3) behind bearer access tokens (RFC 6750)."""

from __future__ import annotations

from typing import Any

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import OAuth2Request, ResourceProtector
from authlib.oauth2.rfc6750 import BearerTokenValidator, InvalidTokenError
from authlib.oidc.core import UserInfoEndpoint

from idp.directory.people import find_entry
from idp.oidc.claims import PersonForClient
from idp.oidc.context import ProviderContext
from idp.oidc.tokens import IssuedToken, find_access_token


class AccessTokens(BearerTokenValidator):
    """Accepts a token that was issued, is unexpired, unrevoked, and whose person is still
    active: deactivating a person stops their tokens at once."""

    def __init__(self, context: ProviderContext) -> None:
        super().__init__()
        self.context = context

    def authenticate_token(self, token_string: str) -> IssuedToken | None:
        with self.context.database.session() as session:
            return find_access_token(session, token_string)

    def validate_token(
        self, token: IssuedToken | None, scopes: list[str], request: OAuth2Request
    ) -> None:
        super().validate_token(token, scopes, request)
        assert token is not None  # the base class refused None
        with self.context.database.session() as session:
            entry = find_entry(session, token.authentication.hsa_id)
            active = entry is not None and entry.active
        if not active:
            raise InvalidTokenError(realm=self.realm, extra_attributes=self.extra_attributes)


class UserInfo(UserInfoEndpoint):
    """Returns, as JSON, the same claims the client's ID token carried for the token's scope."""

    def __init__(self, context: ProviderContext, resource_protector: ResourceProtector) -> None:
        super().__init__(resource_protector=resource_protector)
        self.context = context

    def __call__(self, request: OAuth2Request) -> tuple[int, dict[str, Any], list]:
        # authlib's own __call__ asks a Flask-style protector for the token of the "current"
        # request; here the request is explicit.
        token: IssuedToken = self.resource_protector.validate_request(["openid"], request)
        person = PersonForClient(token.authentication, token.client.client_id, token.client.claims)
        return 200, self.generate_user_info(person, token.scope), default_json_headers

    def generate_user_info(self, user: PersonForClient, scope: str) -> dict[str, Any]:  # type: ignore[override]
        return self.context.release.user_info(user, scope)

    def get_issuer(self) -> str:
        return self.context.issuer

"""The userinfo endpoint (OpenID Connect Core 5.3) behind bearer access tokens (RFC 6750)."""

from __future__ import annotations

from typing import Any

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import OAuth2Request, ResourceProtector, TokenValidator
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6750 import BearerTokenValidator, InvalidTokenError
from authlib.oidc.core import UserInfoEndpoint

from idp.directory.people import find_entry
from idp.oidc.claims import PersonForClient
from idp.oidc.context import ProviderContext
from idp.oidc.starlette_adapter import is_form_encoded
from idp.oidc.tokens import IssuedToken, find_access_token

BEARER = "Bearer"
TOKEN_PARAMETER = "access_token"  # noqa: S105 (a parameter name)


class NoBearerToken(OAuth2Error):
    """The request carries no bearer token: 401 with a bare challenge and no error code
    (RFC 6750 3.1: a request without credentials gets none)."""

    status_code = 401

    def get_body(self) -> list[tuple[str, str]]:
        return []

    def get_headers(self) -> list[tuple[str, str]]:
        return [*default_json_headers, ("WWW-Authenticate", BEARER)]


class MalformedBearerRequest(InvalidRequestError):
    """``invalid_request`` (400) of RFC 6750 3.1, with its challenge."""

    def get_headers(self) -> list[tuple[str, str]]:
        challenge = f'{BEARER} error="{self.error}", error_description="{self.description}"'
        return [*super().get_headers(), ("WWW-Authenticate", challenge)]


class BearerTokenProtector(ResourceProtector):
    """Finds the bearer token where RFC 6750 allows it here: the ``Authorization`` header
    (2.1) or an ``access_token`` in a form-encoded POST body (2.2, pyoidc's default).

    Refused with ``invalid_request``: a body that is not form-encoded, a token in more than
    one place (RFC 6750 2), twice in the body, or in the URI query (2.3: URLs end up in logs
    and history; 5.3 advises against it). No token at all is :class:`NoBearerToken`.
    """

    def parse_request_authorization(self, request: OAuth2Request) -> tuple[TokenValidator, str]:
        has_body_type = request.method == "POST" and request.headers.get("content-type")
        if has_body_type and not is_form_encoded(request):
            raise MalformedBearerRequest(
                "A request body must be application/x-www-form-urlencoded."
            )
        header = request.headers.get("Authorization") or ""
        scheme, _, credentials = header.strip().partition(" ")
        in_header = scheme.lower() == BEARER.lower()
        in_body = request.method == "POST" and TOKEN_PARAMETER in request.payload.datalist
        if TOKEN_PARAMETER in request.args:
            raise MalformedBearerRequest(
                "Send the access token in the Authorization header or a form-encoded body."
            )
        if in_header and in_body:
            raise MalformedBearerRequest("The access token was sent in more than one way.")
        if in_header:
            token = credentials.strip()
        elif in_body:
            values = request.payload.datalist[TOKEN_PARAMETER]
            if len(values) > 1:
                raise MalformedBearerRequest("The access_token parameter is repeated.")
            token = values[0]
        else:
            raise NoBearerToken()
        if not token:
            raise MalformedBearerRequest("The access token is empty.")
        return self.get_token_validator(BEARER), token


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

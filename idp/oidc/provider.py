"""The OpenID Provider: authlib's authorization server with this IdP's grants, clients, tokens
and endpoints registered on it."""

from __future__ import annotations

import logging
from typing import Any

from authlib.common.security import generate_token
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from sqlalchemy.exc import SQLAlchemyError

from idp.config import Settings
from idp.db import Database
from idp.oidc.claims import ClaimRelease, PersonForClient
from idp.oidc.clients import RegisteredClient, find_client
from idp.oidc.codes import IssuedCode
from idp.oidc.context import ProviderContext
from idp.oidc.end_session import EndSession
from idp.oidc.grants import CodeGrant, OpenIDCodeFlow, PrivateKeyJwt, S256CodeChallenge
from idp.oidc.keys import KeyRing
from idp.oidc.settings import OidcSettings
from idp.oidc.starlette_adapter import (
    StarletteAuthorizationServer,
    is_form_encoded,
    repeated_parameters,
)
from idp.oidc.tokens import purge_expired_tokens, save_access_token
from idp.oidc.userinfo import AccessTokens, BearerTokenProtector, UserInfo

logger = logging.getLogger("idp.oidc")
ACCESS_TOKEN_LENGTH = 43  # from 62 characters: 256 bits


class _WithoutIssuedTokens(logging.Filter):
    """authlib logs each issued token response (access and ID token) at DEBUG: drop those."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Issue token")


_TOKEN_FILTER = _WithoutIssuedTokens()
CLIENT_ASSERTION_PARAMETERS = ("client_assertion", "client_assertion_type")


class ClientAuthenticationFailed(InvalidClientError):
    """``invalid_client`` from the token endpoint: always 401 with a challenge for HTTP Basic,
    the one HTTP authentication scheme the endpoint takes (RFC 6749 5.2; a 401 carries a
    ``WWW-Authenticate`` header, RFC 9110 15.5.2)."""

    status_code = 401

    def __init__(self, description: str, realm: str) -> None:
        super().__init__(description=description)
        self.realm = realm

    def get_headers(self) -> list[tuple[str, str]]:
        # Not InvalidClientError's header: it puts error parameters into a Basic challenge.
        headers: list[tuple[str, str]] = OAuth2Error.get_headers(self)
        headers.append(("WWW-Authenticate", f'Basic realm="{self.realm}", charset="UTF-8"'))
        return headers


class OpenIDProvider(StarletteAuthorizationServer):
    """authlib's ``AuthorizationServer`` for this IdP.

    Callers rely on: ``query_client`` returns a :class:`RegisteredClient` or ``None``;
    ``save_token`` stores the access token (hashed) with the code that bought it; the
    ``userinfo`` and ``end_session`` endpoints are registered under those names. All of it
    blocks: call it from a worker thread.
    """

    def __init__(self, context: ProviderContext) -> None:
        super().__init__()
        self.context = context
        # The same filter instance each time, so building several providers adds it once.
        logging.getLogger(AuthorizationCodeGrant.__module__).addFilter(_TOKEN_FILTER)
        ttl = context.settings.access_token_ttl_seconds
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **_: generate_token(ACCESS_TOKEN_LENGTH),
                expires_generator=lambda client, grant_type: ttl,
            ),
        )
        self.register_client_auth_method(PrivateKeyJwt.CLIENT_AUTH_METHOD, PrivateKeyJwt(context))
        self.register_grant(CodeGrant, [S256CodeChallenge(required=True), OpenIDCodeFlow(context)])
        protector = BearerTokenProtector()
        protector.register_token_validator(AccessTokens(context))
        self.register_endpoint(UserInfo(context, protector))
        self.register_endpoint(EndSession(context))
        self.connect_signal("after_authenticate_client", _remember_client)

    def create_token_response(self, request: Any = None) -> Any:
        """authlib's token response, after the checks of the request's form that authlib
        leaves out (:func:`malformed_token_request`)."""
        oauth2_request = self.create_oauth2_request(request)
        if error := malformed_token_request(oauth2_request):
            return self.handle_error_response(oauth2_request, error)
        return super().create_token_response(oauth2_request)

    def authenticate_client(
        self, request: OAuth2Request, methods: list[str], endpoint: str = "token"
    ) -> RegisteredClient:
        """The authenticated client, or :class:`ClientAuthenticationFailed`, whatever went
        wrong on the way: a request that has not proved who sent it never gets past here, and
        never gets a 500. Only a database failure passes through (the client's credentials
        may well be right; a 500 says to try again)."""
        try:
            client: RegisteredClient = super().authenticate_client(request, methods, endpoint)
        except SQLAlchemyError:
            raise
        except InvalidClientError as error:
            raise ClientAuthenticationFailed(
                error.get_error_description() or "Client authentication failed.",
                self.context.issuer,
            ) from error
        except Exception as error:
            logger.warning("client authentication failed on unexpected input", exc_info=True)
            raise ClientAuthenticationFailed(
                "Client authentication failed.", self.context.issuer
            ) from error
        return client

    def query_client(self, client_id: str) -> RegisteredClient | None:
        with self.context.database.session() as session:
            return find_client(session, client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        code: IssuedCode = request.authorization_code
        person: PersonForClient = request.user
        with self.context.database.session() as session:
            purge_expired_tokens(session)
            save_access_token(
                session,
                token["access_token"],
                client_id=person.client_id,
                code_hash=code.code_hash,
                scope=str(token.get("scope", "")),
                authentication=person.authentication,
                ttl_seconds=int(token["expires_in"]),
            )


def malformed_token_request(request: OAuth2Request) -> OAuth2Error | None:
    """The RFC 6749 error for a token request malformed before anything in it is used: a body
    that is not form-encoded (3.2), a repeated parameter (3.2), no ``grant_type`` (4.1.3), or
    two ways of authenticating the client at once (2.3); ``None`` if it has none of these."""
    if not is_form_encoded(request):
        return InvalidRequestError("The body must be application/x-www-form-urlencoded.")
    if repeated_parameters(request):
        return InvalidRequestError("A parameter is repeated.")
    if not request.payload.grant_type:
        return InvalidRequestError("Missing 'grant_type'.")
    has_assertion = any(request.payload.data.get(name) for name in CLIENT_ASSERTION_PARAMETERS)
    if has_assertion and request.headers.get("authorization"):
        return InvalidRequestError("More than one client authentication method.")
    return None


def _remember_client(server: Any, client: RegisteredClient, grant: Any) -> None:
    # authlib records the client on the request only once the whole token request is valid;
    # the audit event of a refused code should still name the client that authenticated.
    grant.request.client = client
    logger.debug("client %s authenticated at the token endpoint", client.client_id)


def build_provider(
    settings: Settings, database: Database, pairwise_secret: bytes
) -> OpenIDProvider:
    """Load (or on first start generate) the signing keys and build the provider."""
    oidc_settings = OidcSettings.for_idp(settings)
    keys = KeyRing(
        oidc_settings.keys_dir,
        rsa_key_size=oidc_settings.rsa_key_size,
        check_interval=oidc_settings.key_check_interval_seconds,
    )
    context = ProviderContext(
        database=database, settings=oidc_settings, keys=keys, release=ClaimRelease(pairwise_secret)
    )
    return OpenIDProvider(context)

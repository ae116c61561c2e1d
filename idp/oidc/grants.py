"""The protocol steps, one class each, on authlib's grant and extension classes.

- :class:`CodeGrant`: the authorization code grant, stricter than RFC 6749 where OpenID
  Connect and RFC 9700 ask for it (``openid`` scope, ``redirect_uri`` always, exact match).
- :class:`S256CodeChallenge`: PKCE, required for every client, S256 only (authlib's
  ``CodeChallenge`` would default to ``plain``).
- :class:`OpenIDCodeFlow`: the ID token of the OpenID Connect code flow.
- :class:`PrivateKeyJwt`: client authentication with a JWT signed by the client's key.

They reach the database, keys and settings through ``server.context``
(:class:`idp.oidc.context.ProviderContext`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from authlib.oidc.core import OpenIDCode
from authlib.oidc.core.errors import RequestNotSupportedError, RequestURINotSupportedError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.exc import IntegrityError

from idp.authn import Authentication
from idp.directory.people import find_entry
from idp.oidc.claims import PersonForClient, choose_acr
from idp.oidc.clients import (
    CLIENT_ASSERTION_ALGS,
    CLIENT_SECRET_BASIC,
    PRIVATE_KEY_JWT,
    RegisteredClient,
)
from idp.oidc.codes import (
    CodeRefusal,
    IssuedCode,
    NewCode,
    expire_unredeemed_codes,
    nonce_was_used,
    redeem_code,
    save_code,
)
from idp.oidc.context import TOKEN_PATH, ProviderContext
from idp.oidc.starlette_adapter import repeated_parameters
from idp.store.models import SeenMessage

MAX_NONCE_LENGTH = 255
# authlib's client signs assertions valid for an hour; pyoidc's for ten minutes.
MAX_CLIENT_ASSERTION_SECONDS = 3600
PROMPT_VALUES = {"none", "login", "consent", "select_account"}


def context_of(server: Any) -> ProviderContext:
    """The provider context of an authlib server built by :mod:`idp.oidc.provider`."""
    context: ProviderContext = server.context
    return context


class RedirectUriMismatch(InvalidRequestError):
    """The redirect URI is missing or not registered: nothing may be sent to it."""

    def __init__(self) -> None:
        # The URI itself is left out: it may hold characters an error_description may not.
        super().__init__("The redirect_uri is missing or not registered for this client.")


class CodeGrant(AuthorizationCodeGrant):
    """Authorization code grant (RFC 6749 4.1) for registered OpenID Connect clients."""

    TOKEN_ENDPOINT_AUTH_METHODS = [CLIENT_SECRET_BASIC, PRIVATE_KEY_JWT]  # noqa: RUF012
    AUTHORIZATION_CODE_LENGTH = 43  # from 62 characters: 256 bits

    @staticmethod
    def validate_authorization_redirect_uri(
        request: OAuth2Request, client: RegisteredClient
    ) -> str:
        redirect_uri = request.payload.redirect_uri
        if not redirect_uri or not client.check_redirect_uri(redirect_uri):
            raise RedirectUriMismatch()
        return str(redirect_uri)

    def validate_authorization_request(self) -> str:
        """authlib's checks (client, redirect URI, response type, PKCE, nonce) and then those of
        OpenID Connect; errors after the redirect URI is known go back to it."""
        redirect_uri = str(super().validate_authorization_request())
        try:
            self._validate_openid_parameters()
        except OAuth2Error as error:
            error.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def _validate_openid_parameters(self) -> None:
        data = self.request.payload.data
        if repeated_parameters(self.request):
            # RFC 6749 3.1; authlib checks only five of them.
            raise InvalidRequestError("A parameter is repeated.")
        if "openid" not in (scope_to_list(self.request.scope or "") or []):
            raise InvalidScopeError("The 'openid' scope is required.")
        if "request" in data:
            raise RequestNotSupportedError()
        if "request_uri" in data:
            raise RequestURINotSupportedError()
        if data.get("response_mode", "query") != "query":
            raise InvalidRequestError("Only response_mode=query is supported.")
        if len(data.get("nonce") or "") > MAX_NONCE_LENGTH:
            raise InvalidRequestError("The nonce is too long.")
        prompts = set((data.get("prompt") or "").split())
        if not prompts <= PROMPT_VALUES:
            raise InvalidRequestError("Unknown 'prompt' value.")
        max_age = data.get("max_age")
        if max_age is not None and not (max_age.isdigit() and len(max_age) <= 9):
            raise InvalidRequestError("'max_age' must be a non-negative integer.")

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        context = context_of(self.server)
        client: RegisteredClient = request.client
        authentication: Authentication = request.user
        data = request.payload.data
        new = NewCode(
            client_id=client.client_id,
            redirect_uri=str(request.payload.redirect_uri),
            scope=str(request.scope),
            nonce=data.get("nonce") or None,
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            acr=choose_acr(client.acr_profile, data.get("acr_values")),
            authentication=authentication,
        )
        with context.database.session() as session:
            if getattr(request, "repeated_authentication", None) is not None:
                # The same login answered again: the code of the lost answer buys nothing now.
                expire_unredeemed_codes(session, client.client_id, authentication)
            save_code(session, code, new, ttl_seconds=context.settings.code_ttl_seconds)

    def query_authorization_code(self, code: str, client: RegisteredClient) -> IssuedCode:
        with context_of(self.server).database.session() as session:
            outcome = redeem_code(session, code, client.client_id)
        # Raised only after the session committed: a burnt code and revoked tokens must stay so.
        if isinstance(outcome, CodeRefusal):
            raise InvalidGrantError(outcome.value)
        return outcome

    def delete_authorization_code(self, authorization_code: IssuedCode) -> None:
        # Nothing to do: redeeming already used the code up, and the row must stay so that a
        # second attempt is recognised as reuse.
        return None

    def authenticate_user(self, authorization_code: IssuedCode) -> PersonForClient:
        authentication = authorization_code.authentication
        with context_of(self.server).database.session() as session:
            entry = find_entry(session, authentication.hsa_id)
            active = entry is not None and entry.active
        if not active:
            raise InvalidGrantError("The person is no longer active.")
        client: RegisteredClient = self.request.client
        return PersonForClient(authentication, client.client_id, client.claims)


class S256CodeChallenge(CodeChallenge):
    """PKCE (RFC 7636) with S256 only, required in every authorization request."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012
    CODE_CHALLENGE_METHODS = {"S256": compare_s256_code_challenge}  # noqa: RUF012

    def validate_code_challenge(self, grant: CodeGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256).")
        if data.get("code_challenge_method") != "S256":
            # A missing method means "plain" (RFC 7636 4.3), which is refused too.
            raise InvalidRequestError("Only code_challenge_method=S256 is accepted.")
        super().validate_code_challenge(grant, redirect_uri)


class OpenIDCodeFlow(OpenIDCode):
    """The ID token: signed with the current key of the client's algorithm (RS256 unless it
    registered ES256), carrying ``acr``, ``amr``, ``auth_time``, ``nonce`` and the claims the
    client may have."""

    def __init__(self, context: ProviderContext) -> None:
        super().__init__(require_nonce=False)
        self.context = context

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        # A repeated answer to a completed login carries the nonce its first code carried:
        # that one is not a replay, a code for any other login with the same nonce is.
        repeated: Authentication | None = getattr(request, "repeated_authentication", None)
        with self.context.database.session() as session:
            return nonce_was_used(
                session, str(request.payload.client_id), nonce, except_for=repeated
            )

    def get_client_claims(self, client: RegisteredClient) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.context.issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + self.context.settings.id_token_ttl_seconds,
        }

    def resolve_client_private_key(self, client: RegisteredClient) -> KeySet:
        # A set of one key: joserfc then writes that key's kid into the header itself, so the
        # kid always names the key that signed even if a rollover happens meanwhile.
        return KeySet([self.context.keys.signing_key(client.id_token_alg)])

    def generate_user_info(self, user: PersonForClient, scope: str) -> dict[str, Any]:
        return self.context.release.user_info(user, scope)


class PrivateKeyJwt(JWTBearerClientAssertion):
    """``private_key_jwt`` (OpenID Connect Core 9, RFC 7523): an assertion signed with a key the
    client registered, addressed to this token endpoint, each ``jti`` accepted once.

    Every refusal is an ``InvalidClientError`` with a fixed description: nothing of the
    assertion is echoed (joserfc's messages quote header values, which an error description
    may not hold). Callers rely on that, and on :class:`idp.oidc.provider.OpenIDProvider`
    turning anything else raised here into ``invalid_client`` as well.
    """

    CLIENT_AUTH_METHOD = PRIVATE_KEY_JWT

    def __init__(self, context: ProviderContext) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.context = context

    def get_audiences(self) -> list[str]:
        return [self.context.url(TOKEN_PATH), self.context.issuer]

    def resolve_client_public_key(self, client: RegisteredClient) -> KeySet:
        # A client registered for client_secret_basic has no keys: its name in an assertion
        # is a failed authentication, not a key lookup that finds nothing.
        if client.auth_method != PRIVATE_KEY_JWT or not client.jwks:
            raise InvalidClientError(
                description="The client is not registered for private_key_jwt."
            )
        return client.public_keys()

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        # Only the algorithms discovery announces (authlib would let joserfc's defaults in).
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(CLIENT_ASSERTION_ALGS))
        except JoseError as error:
            raise InvalidClientError(description="The client assertion is not valid.") from error
        claims: dict[str, Any] = dict(token.claims)
        self.verify_claims(token.claims)
        return claims

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        """Remember ``jti`` until the assertion expires; ``False`` if it was seen before. An
        assertion valid for longer than :data:`MAX_CLIENT_ASSERTION_SECONDS` is refused: its
        ``jti`` would have to be remembered for as long."""
        now = time.time()
        expires_at = claims["exp"]  # verified a number, not in the past, by verify_claims
        if expires_at > now + MAX_CLIENT_ASSERTION_SECONDS + self.leeway:
            raise InvalidClientError(description="The client assertion is valid for too long.")
        expires = dt.datetime.fromtimestamp(int(expires_at), dt.UTC)
        # The hash: any value the client chose (any length, NULs) becomes a fixed-size key.
        seen = hashlib.sha256(str(jti).encode("utf-8", "surrogatepass")).hexdigest()
        try:
            with self.context.database.session() as session:
                session.add(
                    SeenMessage(
                        issuer=f"oidc-client-assertion:{claims['sub']}"[:1024],
                        message_id=seen,
                        expires_at=expires,
                    )
                )
        except IntegrityError:
            return False
        return True

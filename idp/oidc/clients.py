"""Registered clients: what the operator records, and authlib's read-only view of one.

Client secrets are generated here (256 random bits) and stored only as a SHA-256 hash. A fast
hash is the right one for a secret of that strength: nobody can guess it, so a slow KDF would
only slow every token request. The operator never chooses a secret, so none is weak.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749.util import list_to_scope, scope_to_list
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, KeySetSerialization, RSAKey
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from idp.oidc.claims import ACR_BY_PROFILE, DEFAULT_CLAIMS, allowed_scopes, unknown_claims
from idp.oidc.models import OidcAccessToken, OidcAuthorizationCode, OidcClient

CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 (a method name)
PRIVATE_KEY_JWT = "private_key_jwt"
AUTH_METHODS = (CLIENT_SECRET_BASIC, PRIVATE_KEY_JWT)
ID_TOKEN_ALGS = ("RS256", "ES256")
# The algorithms a private_key_jwt client may sign its assertions with.
CLIENT_ASSERTION_ALGS = ("RS256", "ES256")
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


class ClientRegistrationError(ValueError):
    """A registration the IdP refuses; the message says why."""


@dataclass(frozen=True)
class NewClient:
    """What the operator registers. ``jwks`` is required for ``private_key_jwt``."""

    client_id: str
    name: str
    redirect_uris: Sequence[str]
    auth_method: str = CLIENT_SECRET_BASIC
    post_logout_redirect_uris: Sequence[str] = ()
    jwks: dict[str, Any] | None = None
    claims: Sequence[str] = DEFAULT_CLAIMS
    id_token_alg: str = "RS256"  # noqa: S105 (an algorithm name)
    acr_profile: str = "sambi"


@dataclass(frozen=True, eq=False)
class RegisteredClient(ClientMixin):
    """A client as authlib sees it: detached from the database session, safe to share."""

    client_id: str
    name: str
    auth_method: str
    secret_hash: str | None
    jwks: dict[str, Any] | None
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    claims: tuple[str, ...]
    id_token_alg: str
    acr_profile: str

    @classmethod
    def from_row(cls, row: OidcClient) -> RegisteredClient:
        return cls(
            client_id=row.client_id,
            name=row.name,
            auth_method=row.auth_method,
            secret_hash=row.secret_hash,
            jwks=row.jwks,
            redirect_uris=tuple(row.redirect_uris),
            post_logout_redirect_uris=tuple(row.post_logout_redirect_uris or ()),
            claims=tuple(row.claims),
            id_token_alg=row.id_token_alg,
            acr_profile=row.acr_profile,
        )

    # --- authlib's ClientMixin ---------------------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OpenID Connect requires redirect_uri in every request: there is no default.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        """The requested scopes this client may have, in the order asked; unknown ones are
        dropped (OpenID Connect Core 3.1.2.1 says to ignore them)."""
        allowed = set(allowed_scopes(self.claims))
        return list_to_scope([s for s in scope_to_list(scope or "") or [] if s in allowed])

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string match: no prefix, no normalisation, no wildcard.
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None:
            return False
        return hmac.compare_digest(hash_secret(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint != "token" or method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"

    # --- client metadata authlib reads by name -----------------------------------------------

    @property
    def id_token_signed_response_alg(self) -> str:
        return self.id_token_alg

    @property
    def client_metadata(self) -> dict[str, Any]:
        return {"post_logout_redirect_uris": list(self.post_logout_redirect_uris)}

    def public_keys(self) -> KeySet:
        """The client's registered keys for ``private_key_jwt`` (empty for other methods)."""
        return KeySet.import_key_set(cast(KeySetSerialization, self.jwks or {"keys": []}))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def validate_redirect_uri(uri: str) -> str:
    """An absolute https URI without fragment (http only to a loopback host, RFC 8252)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise ClientRegistrationError(f"{uri}: a redirect URI may not have a fragment")
    if not parts.hostname:
        raise ClientRegistrationError(f"{uri}: a redirect URI must be absolute")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS):
        return uri
    raise ClientRegistrationError(f"{uri}: a redirect URI must use https")


def public_jwks(data: dict[str, Any] | str | bytes) -> dict[str, Any]:
    """A JWKS with only the public parts of ``data`` (a JWKS, one JWK, or a PEM public key).

    Symmetric keys are refused: they would turn ``private_key_jwt`` into a shared secret.
    """
    try:
        if isinstance(data, dict) and "keys" in data:
            keys = list(KeySet.import_key_set(cast(KeySetSerialization, data)).keys)
        else:
            keys = [_asymmetric(data)]
    except (JoseError, ValueError, TypeError) as exc:
        raise ClientRegistrationError(f"the client's key could not be read: {exc}") from exc
    if not keys:
        raise ClientRegistrationError("the client's key set is empty")
    public = []
    for key in keys:
        if not isinstance(key, (RSAKey, ECKey)):
            raise ClientRegistrationError("only RSA and EC keys can sign client assertions")
        key.ensure_kid()
        public.append(key.as_dict(private=False))
    return {"keys": public}


def _asymmetric(data: dict[str, Any] | str | bytes) -> RSAKey | ECKey:
    for key_type in (RSAKey, ECKey):
        try:
            return key_type.import_key(data)
        except (JoseError, ValueError, TypeError):
            continue
    raise ClientRegistrationError("the client's key is neither an RSA nor an EC key")


def _validated(new: NewClient) -> NewClient:
    if not _CLIENT_ID.fullmatch(new.client_id):
        raise ClientRegistrationError("client_id: 1-128 of A-Z a-z 0-9 . _ : -")
    if not new.name.strip():
        raise ClientRegistrationError("the client needs a name (shown on the login page)")
    if not new.redirect_uris:
        raise ClientRegistrationError("at least one redirect URI is required")
    for uri in (*new.redirect_uris, *new.post_logout_redirect_uris):
        validate_redirect_uri(uri)
    if new.auth_method not in AUTH_METHODS:
        raise ClientRegistrationError(f"auth method must be one of {', '.join(AUTH_METHODS)}")
    if new.auth_method == PRIVATE_KEY_JWT and not new.jwks:
        raise ClientRegistrationError("private_key_jwt needs the client's public key or JWKS")
    if new.auth_method != PRIVATE_KEY_JWT and new.jwks:
        raise ClientRegistrationError("a public key is only used with private_key_jwt")
    if unknown := unknown_claims(new.claims):
        raise ClientRegistrationError(f"unknown claims: {', '.join(unknown)}")
    if new.id_token_alg not in ID_TOKEN_ALGS:
        raise ClientRegistrationError(f"ID token algorithm must be one of {ID_TOKEN_ALGS}")
    if new.acr_profile not in ACR_BY_PROFILE:
        raise ClientRegistrationError(f"acr profile must be one of {sorted(ACR_BY_PROFILE)}")
    return new


def add_client(session: Session, new: NewClient) -> tuple[RegisteredClient, str | None]:
    """Register a client; returns it and, for ``client_secret_basic``, its secret (shown once,
    never stored). Raises :class:`ClientRegistrationError` for a bad or duplicate client."""
    new = _validated(new)
    if session.get(OidcClient, new.client_id) is not None:
        raise ClientRegistrationError(f"{new.client_id} is already registered")
    secret = secrets.token_urlsafe(32) if new.auth_method == CLIENT_SECRET_BASIC else None
    row = OidcClient(
        client_id=new.client_id,
        name=new.name.strip(),
        auth_method=new.auth_method,
        secret_hash=hash_secret(secret) if secret else None,
        jwks=public_jwks(new.jwks) if new.jwks else None,
        redirect_uris=list(new.redirect_uris),
        post_logout_redirect_uris=list(new.post_logout_redirect_uris),
        claims=list(dict.fromkeys(new.claims)),
        id_token_alg=new.id_token_alg,
        acr_profile=new.acr_profile,
        created_at=dt.datetime.now(dt.UTC),
    )
    session.add(row)
    session.flush()
    return RegisteredClient.from_row(row), secret


def find_client(session: Session, client_id: str) -> RegisteredClient | None:
    """The client registered as ``client_id``; ``None`` for anything else, including a value
    no client could be registered under (never sent to the database: a NUL, say, would be an
    error there rather than an unknown client)."""
    if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
        return None
    row = session.get(OidcClient, client_id)
    return RegisteredClient.from_row(row) if row is not None else None


def list_clients(session: Session) -> list[RegisteredClient]:
    rows = session.scalars(select(OidcClient).order_by(OidcClient.client_id)).all()
    return [RegisteredClient.from_row(row) for row in rows]


def remove_client(session: Session, client_id: str) -> bool:
    """Remove a client with its codes and tokens (they stop working at once)."""
    if session.get(OidcClient, client_id) is None:
        return False
    session.execute(delete(OidcAccessToken).where(OidcAccessToken.client_id == client_id))
    session.execute(
        delete(OidcAuthorizationCode).where(OidcAuthorizationCode.client_id == client_id)
    )
    session.execute(delete(OidcClient).where(OidcClient.client_id == client_id))
    return True

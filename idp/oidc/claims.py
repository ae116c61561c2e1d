"""What a client learns about the person: ``sub``, the user claims it is registered for, ``acr``
and ``amr``.

``sub`` is a pairwise pseudonym per client (HMAC of client and HSA-ID under the IdP's pairwise
secret), never the HSA-ID itself: ``sub`` is in every ID token, so using the HSA-ID there would
hand it to clients that are not registered for ``employeeHsaId``, and a pseudonym per client
keeps two clients from joining their data on it (as the Swedish eID profile's per-SP NameID
does for SAML). The HSA-ID travels in ``employeeHsaId``, Inera's name for it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749.util import scope_to_list

from idp.attributes import SAMBI, SWEDISH_EID
from idp.authn import Authentication


@dataclass(frozen=True)
class UserClaim:
    """A claim about the person, released under ``scope`` to clients registered for it."""

    name: str
    scope: str
    value: Callable[[Authentication], str]


USER_CLAIMS: dict[str, UserClaim] = {
    claim.name: claim
    for claim in (
        # The HSA-ID is what every Treserva-like application keys its users on, so it comes
        # with the ``openid`` scope itself (for clients registered for it).
        UserClaim("employeeHsaId", "openid", lambda a: a.hsa_id),
        UserClaim("name", "profile", lambda a: a.display_name),
        UserClaim("given_name", "profile", lambda a: a.given_name),
        UserClaim("family_name", "profile", lambda a: a.surname),
        UserClaim("email", "email", lambda a: a.mail),
    )
}
DEFAULT_CLAIMS = ("employeeHsaId",)
SCOPES = ("openid", "profile", "email")

# The same LoA URIs as SAML, by the name of the SAML attribute profile.
ACR_BY_PROFILE = {SAMBI.name: SAMBI.loa, SWEDISH_EID.name: SWEDISH_EID.loa}
ACR_VALUES = tuple(ACR_BY_PROFILE.values())

# RFC 8176 method references. Both SITHS methods prove possession of the card's key ("hwk",
# "sc") unlocked by its PIN ("pin"): two factors ("mfa").
_CARD_AMR = ("hwk", "sc", "pin", "mfa")
AMR_BY_METHOD = {"siths-this-device": _CARD_AMR, "siths-other-device": _CARD_AMR}


def unknown_claims(names: Iterable[str]) -> list[str]:
    """The names in ``names`` that are not user claims this IdP can release."""
    return [name for name in names if name not in USER_CLAIMS]


def allowed_scopes(registered_claims: Collection[str]) -> tuple[str, ...]:
    """``openid`` plus each scope under which at least one registered claim is released."""
    wanted = {"openid"} | {USER_CLAIMS[name].scope for name in registered_claims}
    return tuple(scope for scope in SCOPES if scope in wanted)


def pairwise_subject(secret: bytes, client_id: str, hsa_id: str) -> str:
    """The ``sub`` this client sees for this HSA-ID: stable, and unlinkable across clients."""
    # "oidc" separates these from the SAML pseudonyms made from the same secret.
    digest = hmac.new(secret, f"oidc\x00{client_id}\x00{hsa_id}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode("ascii").rstrip("=")


def choose_acr(acr_profile: str, acr_values: str | None) -> str:
    """The first supported URI the client asked for in ``acr_values``, else its profile's.

    Both URIs name the same level (LoA 3), so honouring the request costs nothing; an
    unsupported value is not an error (OpenID Connect Core 3.1.2.1: acr_values is voluntary).
    """
    for value in scope_to_list(acr_values or "") or []:
        if value in ACR_VALUES:
            return value
    return ACR_BY_PROFILE.get(acr_profile, SAMBI.loa)


def amr_for(method: str) -> list[str]:
    return list(AMR_BY_METHOD.get(method, ("hwk",)))


def released_claims(
    authentication: Authentication,
    *,
    subject: str,
    registered_claims: Collection[str],
    scope: str,
) -> dict[str, Any]:
    """``sub`` and the user claims that both the granted ``scope`` and the client's registration
    allow. Empty values are left out rather than sent empty."""
    scopes = set(scope_to_list(scope) or [])
    released: dict[str, Any] = {"sub": subject}
    for name in registered_claims:
        claim = USER_CLAIMS.get(name)
        if claim is None or claim.scope not in scopes:
            continue
        value = claim.value(authentication)
        if value:
            released[name] = value
    return released


@dataclass(frozen=True)
class PersonForClient:
    """The person as one client may see them: authlib's ``user`` in this provider."""

    authentication: Authentication
    client_id: str
    registered_claims: tuple[str, ...]


class ClaimRelease:
    """Builds the claims set of ID tokens and userinfo under the IdP's pairwise secret."""

    def __init__(self, pairwise_secret: bytes) -> None:
        self._secret = pairwise_secret

    def subject(self, client_id: str, hsa_id: str) -> str:
        return pairwise_subject(self._secret, client_id, hsa_id)

    def user_info(self, person: PersonForClient, scope: str) -> dict[str, Any]:
        return released_claims(
            person.authentication,
            subject=self.subject(person.client_id, person.authentication.hsa_id),
            registered_claims=person.registered_claims,
            scope=scope,
        )

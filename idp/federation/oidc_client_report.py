"""The integrator's report for an OpenID Connect client: what `idp metadata validate` says for a
SAML SP, said for a registered client (redirect URIs, authentication, keys, claims, LoA).

Registration already refuses most of this; the report shows a client's standing in the same
one-line-a-check form, and catches what can go stale after registration (e.g. a weak key).
"""

from __future__ import annotations

import base64

from idp.federation.checks import MIN_EC_BITS, MIN_RSA_BITS, Report
from idp.oidc.claims import ACR_BY_PROFILE, unknown_claims
from idp.oidc.clients import (
    AUTH_METHODS,
    ID_TOKEN_ALGS,
    PRIVATE_KEY_JWT,
    ClientRegistrationError,
    RegisteredClient,
    validate_redirect_uri,
)

_EC_BITS = {"P-256": 256, "P-384": 384, "P-521": 521}


def _rsa_bits(modulus: str) -> int:
    raw = base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4))
    return int.from_bytes(raw, "big").bit_length()


def _uri_problems(uris: tuple[str, ...]) -> list[str]:
    problems = []
    for uri in uris:
        try:
            validate_redirect_uri(uri)
        except ClientRegistrationError as exc:
            problems.append(str(exc))
    if len(set(uris)) != len(uris):
        problems.append("a URI is listed twice")
    return problems


def _key_problems(client: RegisteredClient) -> tuple[bool, str]:
    if client.auth_method != PRIVATE_KEY_JWT:
        return True, "none needed (client_secret_basic: the secret is stored only as a hash)"
    keys = (client.jwks or {}).get("keys") or []
    if not keys:
        return False, "private_key_jwt without a public key"
    problems, summary = [], []
    for key in keys:
        kid = key.get("kid", "?")
        if key.get("kty") == "RSA":
            bits = _rsa_bits(key.get("n", ""))
            summary.append(f"{kid}: RSA {bits}")
            if bits < MIN_RSA_BITS:
                problems.append(f"{kid} is a {bits}-bit RSA key (minimum {MIN_RSA_BITS})")
        elif key.get("kty") == "EC":
            bits = _EC_BITS.get(key.get("crv", ""), 0)
            summary.append(f"{kid}: EC {key.get('crv')}")
            if bits < MIN_EC_BITS:
                problems.append(f"{kid} is on curve {key.get('crv')} (minimum P-256)")
        else:
            problems.append(f"{kid} is a {key.get('kty')} key, not RSA or EC")
    if problems:
        return False, "; ".join(problems)
    return True, ", ".join(summary)


def oidc_client_report(client: RegisteredClient) -> Report:
    """Every check on ``client``; ``report.ok`` when none failed."""
    report = Report(f"oidc client {client.client_id}")
    problems = _uri_problems(client.redirect_uris)
    report.add(
        "redirect-uris",
        bool(client.redirect_uris) and not problems,
        "; ".join(problems)
        or ("exact match, https (http only to loopback): " + ", ".join(client.redirect_uris))
        if client.redirect_uris
        else "no redirect URI",
    )
    problems = _uri_problems(client.post_logout_redirect_uris)
    report.add(
        "post-logout-redirect-uris",
        not problems,
        "; ".join(problems) or (", ".join(client.post_logout_redirect_uris) or "none"),
    )
    report.add(
        "auth-method",
        client.auth_method in AUTH_METHODS,
        client.auth_method
        if client.auth_method in AUTH_METHODS
        else f"{client.auth_method} is not one of {', '.join(AUTH_METHODS)}",
    )
    passed, detail = _key_problems(client)
    report.add("keys", passed, detail)
    report.add(
        "id-token-alg",
        client.id_token_alg in ID_TOKEN_ALGS,
        client.id_token_alg
        if client.id_token_alg in ID_TOKEN_ALGS
        else f"{client.id_token_alg} is not one of {', '.join(ID_TOKEN_ALGS)}",
    )
    unknown = unknown_claims(client.claims)
    report.add(
        "claims",
        not unknown,
        f"the IdP does not release: {', '.join(unknown)}"
        if unknown
        else f"{len(client.claims)} claims, all known: {', '.join(client.claims)}",
    )
    loa = ACR_BY_PROFILE.get(client.acr_profile)
    report.add(
        "acr",
        loa is not None,
        f"{client.acr_profile}: {loa}" if loa else f"unknown acr profile {client.acr_profile}",
    )
    return report

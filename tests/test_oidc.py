"""The OpenID Provider over real sockets, driven by a client written without this code.

The relying party is authlib's own httpx ``OAuth2Client`` configured only from the published
discovery document; ID tokens are checked with joserfc against the published JWKS and with
authlib's ``CodeIDToken`` claim rules. The browser part is the httpx stand-in of
``tests.helpers.support``, presenting a test card as its TLS client certificate.
"""

from __future__ import annotations

import re
import sqlite3
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.integrations.base_client.errors import OAuthError
from authlib.oauth2.rfc6749.errors import MismatchingStateException
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.conftest import IdpUnderTest
from tests.helpers.flows import follow, login_with_card, posted_form
from tests.helpers.refusals import assert_refusal_page
from tests.helpers.support import browser, parse_page, tls_context

with warnings.catch_warnings():
    # authlib 1.9 would rather have the "httpx2" package; with httpx its client works the same.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

SAMBI_LOA = "http://id.sambi.se/loa/loa3"
EID_LOA = "http://id.elegnamnden.se/loa/1.0/loa3"
RP_CALLBACK = "https://rp.example.test/callback"
RP_LOGGED_OUT = "https://rp.example.test/logged-out"
OTHER_CALLBACK = "https://other.example.test/cb"
JWT_CALLBACK = "https://jwt-rp.example.test/cb"


@dataclass
class RegisteredRp:
    client_id: str
    redirect_uri: str
    secret: str | None = None
    private_key: RSAKey | None = None


@dataclass
class Provider:
    idp: IdpUnderTest
    metadata: dict[str, Any]
    rp: RegisteredRp
    other: RegisteredRp
    jwt_rp: RegisteredRp
    opened: list[OAuth2Client] = field(default_factory=list)

    def jwks(self) -> KeySet:
        return KeySet.import_key_set(self.get(self.metadata["jwks_uri"]).json())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(url, verify=tls_context(self.idp.ca_file), **kwargs)

    def client(self, rp: RegisteredRp, **kwargs: Any) -> OAuth2Client:
        """authlib's OAuth2Client for ``rp``, knowing the IdP only from discovery."""
        options: dict[str, Any] = {
            "scope": "openid profile email",
            "redirect_uri": rp.redirect_uri,
            "code_challenge_method": "S256",
            "verify": tls_context(self.idp.ca_file),
            **kwargs,
        }
        if rp.private_key is not None:
            client = OAuth2Client(
                rp.client_id,
                client_secret=rp.private_key,
                token_endpoint_auth_method="private_key_jwt",
                **options,
            )
            client.register_client_auth_method(PrivateKeyJWT(self.metadata["token_endpoint"]))
        else:
            client = OAuth2Client(rp.client_id, client_secret=rp.secret, **options)
        # Closed at the end of the module: an idle keep-alive connection would hold up the
        # IdP's shutdown.
        self.opened.append(client)
        return client


@dataclass
class Request:
    """One authorization request as the RP made it."""

    url: str
    state: str
    verifier: str
    nonce: str


def add_client(idp: IdpUnderTest, client_id: str, *args: str) -> str | None:
    result = idp.idp_cli("oidc", "client", "add", client_id, *args)
    assert result.returncode == 0, result.stderr
    match = re.search(r"^client_secret: (\S+)$", result.stdout, re.MULTILINE)
    return match.group(1) if match else None


@pytest.fixture(scope="module")
def op(idp: IdpUnderTest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    secret = add_client(
        idp,
        "treserva-oidc",
        "--name",
        "Treserva (OIDC)",
        "--redirect-uri",
        RP_CALLBACK,
        "--post-logout-redirect-uri",
        RP_LOGGED_OUT,
        "--claims",
        "employeeHsaId,name,given_name,family_name,email",
    )
    other_secret = add_client(
        idp, "other-rp", "--name", "Annat system", "--redirect-uri", OTHER_CALLBACK
    )
    key = RSAKey.generate_key(2048, private=True)
    key_file = tmp_path_factory.mktemp("jwt-rp") / "public.pem"
    key_file.write_bytes(key.as_pem(private=False))
    add_client(
        idp,
        "jwt-rp",
        "--name",
        "JWT RP",
        "--redirect-uri",
        JWT_CALLBACK,
        "--auth-method",
        "private_key_jwt",
        "--public-key",
        str(key_file),
        "--id-token-alg",
        "ES256",
        "--acr-profile",
        "swedish-eid",
    )
    discovered = httpx.get(
        f"{idp.base_url}/.well-known/openid-configuration", verify=tls_context(idp.ca_file)
    )
    assert discovered.status_code == 200
    provider = Provider(
        idp=idp,
        metadata=discovered.json(),
        rp=RegisteredRp("treserva-oidc", RP_CALLBACK, secret=secret),
        other=RegisteredRp("other-rp", OTHER_CALLBACK, secret=other_secret),
        jwt_rp=RegisteredRp("jwt-rp", JWT_CALLBACK, private_key=key),
    )
    yield provider
    for client in provider.opened:
        client.close()


# --- the RP's and the browser's steps ----------------------------------------------------------


def authorization_request(op: Provider, client: OAuth2Client, **extra: str) -> Request:
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = client.create_authorization_url(
        op.metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **extra
    )
    return Request(url, state, verifier, nonce)


def until_callback(
    client: httpx.Client, response: httpx.Response, base_url: str, callback: str
) -> httpx.Response | str:
    """Follow the IdP's redirects; stop at the RP's callback (returned as a URL) or at a page."""
    while response.status_code in (302, 303):
        location = response.headers["location"]
        if location.startswith(callback):
            return location
        if location.startswith("/"):
            location = base_url + location
        response = client.get(location)
    return response


def login_at_chooser(
    op: Provider, browser_client: httpx.Client, chooser: httpx.Response, callback: str
) -> str:
    """Click "SITHS eID på denna enhet" on the chooser and return the callback URL."""
    assert "Välj legitimeringsmetod" in chooser.text, chooser.text[:500]
    href = parse_page(chooser.text).links["method-this-device"]
    outcome = until_callback(browser_client, browser_client.get(href), op.idp.base_url, callback)
    assert isinstance(outcome, str), outcome.text[:1000]
    return outcome


def card_login(op: Provider, browser_client: httpx.Client, request: Request, callback: str) -> str:
    chooser = until_callback(
        browser_client, browser_client.get(request.url), op.idp.base_url, callback
    )
    assert isinstance(chooser, httpx.Response), f"expected the chooser, went to {chooser}"
    return login_at_chooser(op, browser_client, chooser, callback)


def sso_callback(
    op: Provider, browser_client: httpx.Client, request: Request, callback: str
) -> str:
    """An authorization answered from the SSO session: the very first response is the redirect."""
    response = browser_client.get(request.url)
    assert response.status_code == 302, response.text[:1000]
    location = response.headers["location"]
    assert location.startswith(callback), location
    return location


def validated_id_token(
    op: Provider, token: dict[str, Any], client_id: str, nonce: str
) -> CodeIDToken:
    """Verify the signature against the published JWKS and the claims by authlib's rules."""
    decoded = jwt.decode(token["id_token"], op.jwks(), algorithms=["RS256", "ES256"])
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        options={
            "iss": {"essential": True, "value": op.metadata["issuer"]},
            "aud": {"essential": True, "value": client_id},
            "nonce": {"essential": True, "value": nonce},
            "acr": {"essential": True},
            "auth_time": {"essential": True},
        },
        params={"nonce": nonce, "access_token": token["access_token"], "client_id": client_id},
    )
    claims.validate(leeway=5)
    return claims


def query_of(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def assert_error_redirect(response: httpx.Response, callback: str, error: str, state: str) -> None:
    assert response.status_code == 302, response.text[:500]
    location = response.headers["location"]
    assert location.startswith(callback + "?"), location
    answer = query_of(location)
    assert answer["error"] == error, answer
    assert answer["state"] == state
    assert "code" not in answer and "access_token" not in answer and "id_token" not in answer


def oauth_error(call: Any) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        call()
    return caught.value


@pytest.fixture(scope="module")
def sso_browser(op: Provider) -> Iterator[httpx.Client]:
    """A browser in which Anna has logged in (with her card) once: later codes come from SSO."""
    with browser(op.idp.ca_file, op.idp.card("anna")) as client:
        rp = op.client(op.rp)
        card_login(op, client, authorization_request(op, rp), RP_CALLBACK)
        yield client


def fresh_code(op: Provider, sso: httpx.Client, rp: RegisteredRp) -> tuple[Request, str]:
    request = authorization_request(op, op.client(rp))
    return request, sso_callback(op, sso, request, rp.redirect_uri)


# --- discovery, the happy path, SSO ------------------------------------------------------------


def test_discovery_and_jwks_describe_the_provider(op: Provider) -> None:
    metadata = OpenIDProviderMetadata(op.metadata)
    metadata.validate()
    assert metadata["issuer"] == op.idp.base_url
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "private_key_jwt",
    }
    assert "employeeHsaId" in metadata["claims_supported"]
    assert SAMBI_LOA in metadata["acr_values_supported"]
    response = op.get(metadata["jwks_uri"])
    keys = response.json()["keys"]
    # A current and a next key per algorithm: the next one is published before it signs.
    assert sorted(key["alg"] for key in keys) == ["ES256", "ES256", "RS256", "RS256"]
    assert all(key["use"] == "sig" and key["kid"] for key in keys)
    assert not any(private in key for key in keys for private in ("d", "p", "q", "dp"))


def test_login_with_card_gives_an_id_token_with_the_hsa_id(op: Provider) -> None:
    rp = op.client(op.rp)
    request = authorization_request(op, rp)
    with browser(op.idp.ca_file, op.idp.card("anna")) as client:
        callback = card_login(op, client, request, RP_CALLBACK)
    assert query_of(callback)["state"] == request.state
    token = rp.fetch_token(
        op.metadata["token_endpoint"],
        authorization_response=callback,
        code_verifier=request.verifier,
        state=request.state,
    )
    assert token["token_type"].lower() == "bearer" and "refresh_token" not in token
    claims = validated_id_token(op, token, op.rp.client_id, request.nonce)
    assert claims["employeeHsaId"] == "SE2120001355-E0001"
    assert claims["sub"] and "SE2120001355" not in claims["sub"]  # pairwise, not the HSA-ID
    assert claims["acr"] == SAMBI_LOA
    assert set(claims["amr"]) >= {"hwk", "sc", "pin"}
    assert abs(claims["auth_time"] - time.time()) < 60
    assert claims["given_name"] == "Anna" and claims["family_name"] == "Andersson"
    assert claims["email"] == "anna.andersson@example.invalid"
    assert claims["at_hash"] and 0 < claims["exp"] - claims["iat"] <= 3600
    kids = {key["kid"] for key in op.get(op.metadata["jwks_uri"]).json()["keys"]}
    assert jwt.decode(token["id_token"], op.jwks()).header["kid"] in kids

    userinfo = rp.get(op.metadata["userinfo_endpoint"])
    assert userinfo.status_code == 200
    assert userinfo.json()["sub"] == claims["sub"]
    assert userinfo.json()["employeeHsaId"] == "SE2120001355-E0001"
    assert userinfo.json()["name"] == "Anna Andersson"


def test_client_gets_only_the_claims_it_is_registered_for(
    op: Provider, sso_browser: httpx.Client
) -> None:
    # other-rp is registered for employeeHsaId only: asking for profile and email changes nothing.
    rp = op.client(op.other)
    request = authorization_request(op, rp)
    callback = sso_callback(op, sso_browser, request, OTHER_CALLBACK)
    token = rp.fetch_token(
        op.metadata["token_endpoint"],
        authorization_response=callback,
        code_verifier=request.verifier,
    )
    assert token["scope"] == "openid"
    claims = validated_id_token(op, token, op.other.client_id, request.nonce)
    assert claims["employeeHsaId"] == "SE2120001355-E0001"
    assert not {"name", "given_name", "family_name", "email"} & set(claims)
    assert set(rp.get(op.metadata["userinfo_endpoint"]).json()) == {"sub", "employeeHsaId"}
    # The pairwise sub differs between clients for the same person.
    first = op.client(op.rp)
    request = authorization_request(op, first)
    callback = sso_callback(op, sso_browser, request, RP_CALLBACK)
    token = first.fetch_token(
        op.metadata["token_endpoint"],
        authorization_response=callback,
        code_verifier=request.verifier,
    )
    assert validated_id_token(op, token, op.rp.client_id, request.nonce)["sub"] != claims["sub"]


def test_private_key_jwt_client_gets_an_es256_id_token(
    op: Provider, sso_browser: httpx.Client
) -> None:
    rp = op.client(op.jwt_rp)
    request = authorization_request(op, rp)
    callback = sso_callback(op, sso_browser, request, JWT_CALLBACK)
    token = rp.fetch_token(
        op.metadata["token_endpoint"],
        authorization_response=callback,
        code_verifier=request.verifier,
    )
    claims = validated_id_token(op, token, op.jwt_rp.client_id, request.nonce)
    assert claims.header["alg"] == "ES256"
    assert claims["acr"] == EID_LOA
    assert claims["employeeHsaId"] == "SE2120001355-E0001"


def test_sso_from_saml_login_needs_no_card_and_prompt_login_asks_again(op: Provider) -> None:
    saml_url, _ = op.idp.sp.login_url()
    with browser(op.idp.ca_file, op.idp.card("bertil")) as card_browser:
        action, _fields = posted_form(login_with_card(card_browser, saml_url, op.idp.base_url))
        assert action == op.idp.sp.acs_url
        rp = op.client(op.rp)
        # The same cookies in a browser that has no card at all.
        with browser(op.idp.ca_file) as no_card:
            no_card.cookies = card_browser.cookies
            request = authorization_request(op, rp)
            callback = sso_callback(op, no_card, request, RP_CALLBACK)
        token = rp.fetch_token(
            op.metadata["token_endpoint"],
            authorization_response=callback,
            code_verifier=request.verifier,
        )
        first = validated_id_token(op, token, op.rp.client_id, request.nonce)
        assert first["employeeHsaId"] == "SE2120001355-E0002"

        time.sleep(1.1)  # so that a fresh login has a later auth_time
        forced = authorization_request(op, rp, prompt="login")
        callback = card_login(op, card_browser, forced, RP_CALLBACK)
        token = rp.fetch_token(
            op.metadata["token_endpoint"],
            authorization_response=callback,
            code_verifier=forced.verifier,
        )
        again = validated_id_token(op, token, op.rp.client_id, forced.nonce)
        assert again["auth_time"] > first["auth_time"]

        # max_age=0 demands a fresh login as well.
        aged = authorization_request(op, rp, max_age="0")
        chooser = until_callback(
            card_browser, card_browser.get(aged.url), op.idp.base_url, RP_CALLBACK
        )
        assert isinstance(chooser, httpx.Response) and "Välj legitimeringsmetod" in chooser.text


def test_prompt_none_without_session_is_login_required(op: Provider) -> None:
    request = authorization_request(op, op.client(op.rp), prompt="none")
    with browser(op.idp.ca_file) as client:
        response = client.get(request.url)
    assert_error_redirect(response, RP_CALLBACK, "login_required", request.state)


def test_end_session_logs_out_and_returns_to_the_client(op: Provider) -> None:
    rp = op.client(op.rp)
    with browser(op.idp.ca_file, op.idp.card("anna")) as client:
        request = authorization_request(op, rp)
        callback = card_login(op, client, request, RP_CALLBACK)
        token = rp.fetch_token(
            op.metadata["token_endpoint"],
            authorization_response=callback,
            code_verifier=request.verifier,
        )
        query = urllib.parse.urlencode(
            {
                "id_token_hint": token["id_token"],
                "post_logout_redirect_uri": RP_LOGGED_OUT,
                "state": "bye & välkommen åter",
            }
        )
        response = client.get(f"{op.metadata['end_session_endpoint']}?{query}")
        assert response.status_code == 302
        assert response.headers["location"].startswith(RP_LOGGED_OUT)
        assert query_of(response.headers["location"])["state"] == "bye & välkommen åter"
        # The SSO session is gone: the next authorization asks for the card again.
        again = authorization_request(op, rp)
        page = until_callback(client, client.get(again.url), op.idp.base_url, RP_CALLBACK)
        assert isinstance(page, httpx.Response) and "Välj legitimeringsmetod" in page.text


def test_end_session_without_id_token_hint_asks_the_user_first(op: Provider) -> None:
    rp = op.client(op.rp)
    with browser(op.idp.ca_file, op.idp.card("anna")) as client:
        card_login(op, client, authorization_request(op, rp), RP_CALLBACK)
        query = urllib.parse.urlencode({"client_id": op.rp.client_id})
        page = client.get(f"{op.metadata['end_session_endpoint']}?{query}")
        assert page.status_code == 200 and "Vill du logga ut?" in page.text
        assert "Treserva (OIDC)" in page.text
        # Not yet logged out: the SSO session still answers.
        sso_callback(op, client, authorization_request(op, rp), RP_CALLBACK)
        # A forged confirmation (no valid CSRF value) logs nobody out.
        form = parse_page(page.text).forms[0]
        confirm_url = op.idp.base_url + form["action"]
        assert_refusal_page(
            client.post(confirm_url, data={"csrf": "forged"}), "oidc_invalid_logout"
        )
        sso_callback(op, client, authorization_request(op, rp), RP_CALLBACK)
        done = client.post(confirm_url, data=form["fields"])
        assert done.status_code == 200 and 'id="logged-out"' in done.text
        page = until_callback(
            client, client.get(authorization_request(op, rp).url), op.idp.base_url, RP_CALLBACK
        )
        assert isinstance(page, httpx.Response) and "Välj legitimeringsmetod" in page.text


def test_end_session_with_a_forged_id_token_hint_is_refused(op: Provider) -> None:
    forged = jwt.encode(
        {"alg": "RS256"},
        {"iss": op.metadata["issuer"], "aud": op.rp.client_id, "sub": "x"},
        RSAKey.generate_key(2048, private=True),
    )
    query = urllib.parse.urlencode(
        {"id_token_hint": forged, "post_logout_redirect_uri": RP_LOGGED_OUT}
    )
    with browser(op.idp.ca_file) as client:
        response = client.get(f"{op.metadata['end_session_endpoint']}?{query}")
    assert_refusal_page(response, "oidc_invalid_logout")


# --- bad authorization requests ----------------------------------------------------------------


def test_unknown_client_sees_the_error_page(op: Provider) -> None:
    stranger = OAuth2Client(
        "no-such-client", "x", redirect_uri=RP_CALLBACK, code_challenge_method="S256"
    )
    request = authorization_request(op, stranger, scope="openid")
    with browser(op.idp.ca_file) as client:
        response = client.get(request.url)
    assert_refusal_page(response, "oidc_unknown_client")


@pytest.mark.parametrize(
    "redirect_uri",
    [
        RP_CALLBACK + "/",
        RP_CALLBACK + "?next=/admin",
        "https://RP.example.test/callback",
        "https://rp.example.test/call",
        "https://evil.example.test/callback",
        "",
    ],
)
def test_redirect_uri_not_matching_exactly_gets_no_redirect(
    op: Provider, redirect_uri: str
) -> None:
    request = authorization_request(op, op.client(op.rp), redirect_uri=redirect_uri)
    with browser(op.idp.ca_file) as client:
        response = client.get(request.url)
    assert_refusal_page(response, "oidc_redirect_uri_mismatch")


@pytest.mark.parametrize("response_type", ["token", "id_token", "code id_token", "id_token token"])
def test_unsupported_response_types_are_refused(op: Provider, response_type: str) -> None:
    request = authorization_request(op, op.client(op.rp), response_type=response_type)
    with browser(op.idp.ca_file) as client:
        response = client.get(request.url)
    assert_error_redirect(response, RP_CALLBACK, "unsupported_response_type", request.state)


def test_missing_openid_scope_is_refused(op: Provider) -> None:
    request = authorization_request(op, op.client(op.rp), scope="profile email")
    with browser(op.idp.ca_file) as client:
        response = client.get(request.url)
    assert_error_redirect(response, RP_CALLBACK, "invalid_scope", request.state)


def test_pkce_plain_and_no_pkce_are_refused(op: Provider) -> None:
    verifier = generate_token(48)
    plain = op.client(op.rp, code_challenge_method=None)
    for extra in (
        {"code_challenge": verifier, "code_challenge_method": "plain"},
        {"code_challenge": verifier},  # no method means plain (RFC 7636 4.3)
        {},
    ):
        url, state = plain.create_authorization_url(op.metadata["authorization_endpoint"], **extra)
        with browser(op.idp.ca_file) as client:
            response = client.get(url)
        assert_error_redirect(response, RP_CALLBACK, "invalid_request", state)


def test_state_is_echoed_exactly_and_a_tampered_one_is_noticed(
    op: Provider, sso_browser: httpx.Client
) -> None:
    rp = op.client(op.rp)
    odd_state = "a b&c=d/é?+%20#" + generate_token(10)
    request = authorization_request(op, rp, state=odd_state)
    callback = sso_callback(op, sso_browser, request, RP_CALLBACK)
    assert query_of(callback)["state"] == odd_state
    tampered = callback.replace(
        urllib.parse.urlencode({"state": odd_state}), urllib.parse.urlencode({"state": "forged"})
    )
    assert query_of(tampered)["state"] == "forged"
    with pytest.raises(MismatchingStateException):
        rp.fetch_token(
            op.metadata["token_endpoint"],
            authorization_response=tampered,
            code_verifier=request.verifier,
            state=odd_state,
        )


# --- bad token requests ------------------------------------------------------------------------


def test_missing_pkce_verifier_is_refused(op: Provider, sso_browser: httpx.Client) -> None:
    rp = op.client(op.rp)
    _request, callback = fresh_code(op, sso_browser, op.rp)
    error = oauth_error(
        lambda: rp.fetch_token(op.metadata["token_endpoint"], authorization_response=callback)
    )
    assert error.error == "invalid_request"


def test_wrong_pkce_verifier_is_refused(op: Provider, sso_browser: httpx.Client) -> None:
    rp = op.client(op.rp)
    _request, callback = fresh_code(op, sso_browser, op.rp)
    error = oauth_error(
        lambda: rp.fetch_token(
            op.metadata["token_endpoint"],
            authorization_response=callback,
            code_verifier=generate_token(48),
        )
    )
    assert error.error == "invalid_grant"


def test_reused_code_is_refused_and_revokes_its_tokens(
    op: Provider, sso_browser: httpx.Client
) -> None:
    rp = op.client(op.rp)
    request, callback = fresh_code(op, sso_browser, op.rp)
    token = rp.fetch_token(
        op.metadata["token_endpoint"],
        authorization_response=callback,
        code_verifier=request.verifier,
    )
    assert rp.get(op.metadata["userinfo_endpoint"]).status_code == 200
    replay = op.client(op.rp)
    error = oauth_error(
        lambda: replay.fetch_token(
            op.metadata["token_endpoint"],
            authorization_response=callback,
            code_verifier=request.verifier,
        )
    )
    assert error.error == "invalid_grant"
    refused = op.get(
        op.metadata["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


def test_expired_code_is_refused(op: Provider, sso_browser: httpx.Client) -> None:
    rp = op.client(op.rp)
    request, callback = fresh_code(op, sso_browser, op.rp)
    with sqlite3.connect(op.idp.database_file()) as connection:
        connection.execute(
            "UPDATE oidc_authorization_codes SET expires_at = '2020-01-01 00:00:00.000000' "
            "WHERE client_id = ? AND used_at IS NULL",
            (op.rp.client_id,),
        )
    error = oauth_error(
        lambda: rp.fetch_token(
            op.metadata["token_endpoint"],
            authorization_response=callback,
            code_verifier=request.verifier,
        )
    )
    assert error.error == "invalid_grant"


def test_code_stolen_by_another_client_is_refused(op: Provider, sso_browser: httpx.Client) -> None:
    request, callback = fresh_code(op, sso_browser, op.rp)
    thief = op.client(op.other)
    stolen = callback.replace(RP_CALLBACK, OTHER_CALLBACK)
    error = oauth_error(
        lambda: thief.fetch_token(
            op.metadata["token_endpoint"],
            authorization_response=stolen,
            code_verifier=request.verifier,
        )
    )
    assert error.error == "invalid_grant"
    # A code that leaked is void for its own client too.
    error = oauth_error(
        lambda: op.client(op.rp).fetch_token(
            op.metadata["token_endpoint"],
            authorization_response=callback,
            code_verifier=request.verifier,
        )
    )
    assert error.error == "invalid_grant"


def test_wrong_client_secret_is_refused(op: Provider, sso_browser: httpx.Client) -> None:
    request, callback = fresh_code(op, sso_browser, op.rp)
    impostor = op.client(RegisteredRp(op.rp.client_id, RP_CALLBACK, secret="not-the-secret"))
    error = oauth_error(
        lambda: impostor.fetch_token(
            op.metadata["token_endpoint"],
            authorization_response=callback,
            code_verifier=request.verifier,
        )
    )
    assert error.error == "invalid_client"
    # The code survives a failed client authentication: the real client still redeems it.
    token = op.client(op.rp).fetch_token(
        op.metadata["token_endpoint"],
        authorization_response=callback,
        code_verifier=request.verifier,
    )
    assert "id_token" in token


def test_bad_client_assertion_is_refused(op: Provider, sso_browser: httpx.Client) -> None:
    request, callback = fresh_code(op, sso_browser, op.jwt_rp)
    wrong_key = RSAKey.generate_key(2048, private=True)
    impostor = op.client(RegisteredRp(op.jwt_rp.client_id, JWT_CALLBACK, private_key=wrong_key))
    error = oauth_error(
        lambda: impostor.fetch_token(
            op.metadata["token_endpoint"],
            authorization_response=callback,
            code_verifier=request.verifier,
        )
    )
    assert error.error == "invalid_client"


def test_replayed_client_assertion_is_refused(op: Provider) -> None:
    assertion = private_key_jwt_sign(
        op.jwt_rp.private_key, op.jwt_rp.client_id, op.metadata["token_endpoint"]
    )
    form = {
        "grant_type": "authorization_code",
        "code": "no-such-code",
        "redirect_uri": JWT_CALLBACK,
        "code_verifier": generate_token(48),
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    post = lambda: httpx.post(  # noqa: E731
        op.metadata["token_endpoint"], data=form, verify=tls_context(op.idp.ca_file)
    )
    assert post().json()["error"] == "invalid_grant"  # the client was authenticated
    assert post().json()["error"] == "invalid_client"  # the same jti twice is not


def test_token_for_deactivated_person_is_refused(op: Provider, tmp_path: Path) -> None:
    hsa_id = "SE2120001355-E0888"
    issued = op.idp.idp_cli(
        "card", "issue", "--hsa-id", hsa_id, "--given-name", "Dag", "--surname", "Dahl",
        "--org-number", "2120001355", "--out", str(tmp_path), "--pki", str(op.idp.pki.directory),
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    added = op.idp.idp_cli(
        "people", "add", "--hsa-id", hsa_id, "--given-name", "Dag", "--surname", "Dahl",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    card = (tmp_path / f"{hsa_id}.crt.pem", tmp_path / f"{hsa_id}.key.pem")
    rp = op.client(op.rp)
    with browser(op.idp.ca_file, card) as client:
        first = authorization_request(op, rp)
        callback = card_login(op, client, first, RP_CALLBACK)
        token = rp.fetch_token(
            op.metadata["token_endpoint"],
            authorization_response=callback,
            code_verifier=first.verifier,
        )
        assert (
            validated_id_token(op, token, op.rp.client_id, first.nonce)["employeeHsaId"] == hsa_id
        )
        second, pending_code = fresh_code(op, client, op.rp)

    deactivated = op.idp.idp_cli("people", "deactivate", hsa_id)
    assert deactivated.returncode == 0, deactivated.stderr
    error = oauth_error(
        lambda: op.client(op.rp).fetch_token(
            op.metadata["token_endpoint"],
            authorization_response=pending_code,
            code_verifier=second.verifier,
        )
    )
    assert error.error == "invalid_grant"
    assert rp.get(op.metadata["userinfo_endpoint"]).status_code == 401


# --- operator ----------------------------------------------------------------------------------


def test_removed_client_is_unknown(op: Provider) -> None:
    secret = add_client(op.idp, "short-lived", "--name", "Kortlivad", "--redirect-uri", RP_CALLBACK)
    assert secret
    listed = op.idp.idp_cli("oidc", "client", "list")
    assert "short-lived" in listed.stdout and "treserva-oidc" in listed.stdout
    assert secret not in listed.stdout
    with sqlite3.connect(op.idp.database_file()) as connection:
        stored = connection.execute("SELECT * FROM oidc_clients").fetchall()
    assert secret not in repr(stored)  # only a hash is kept
    removed = op.idp.idp_cli("oidc", "client", "remove", "short-lived")
    assert removed.returncode == 0, removed.stderr
    stranger = OAuth2Client(
        "short-lived", "x", redirect_uri=RP_CALLBACK, code_challenge_method="S256"
    )
    request = authorization_request(op, stranger, scope="openid")
    with browser(op.idp.ca_file) as client:
        assert_refusal_page(client.get(request.url), "oidc_unknown_client")


def test_key_rollover_publishes_the_next_key_before_it_signs(
    op: Provider, sso_browser: httpx.Client
) -> None:
    def rs256_kids() -> list[str]:
        return [
            k["kid"] for k in op.get(op.metadata["jwks_uri"]).json()["keys"] if k["alg"] == "RS256"
        ]

    def id_token_kid() -> tuple[str, dict[str, Any], Request]:
        rp = op.client(op.rp)
        request, callback = fresh_code(op, sso_browser, op.rp)
        token = rp.fetch_token(
            op.metadata["token_endpoint"],
            authorization_response=callback,
            code_verifier=request.verifier,
        )
        return jwt.decode(token["id_token"], op.jwks()).header["kid"], token, request

    current, next_key = rs256_kids()
    kid, old_token, old_request = id_token_kid()
    assert kid == current
    rotated = op.idp.idp_cli("oidc", "keys", "rotate", "--alg", "RS256")
    assert rotated.returncode == 0, rotated.stderr
    deadline = time.monotonic() + 10
    while len(rs256_kids()) != 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    # Published in order current, next, retired: the old next key now signs, a new next key
    # is announced, and the old current key stays for the tokens it signed.
    now_current, new_next, retired = rs256_kids()
    assert (now_current, retired) == (next_key, current)
    assert new_next not in (current, next_key)
    kid, _token, _request = id_token_kid()
    assert kid == next_key  # the key published since the last rollover now signs
    # A token signed before the rollover still verifies against the published keys.
    validated_id_token(op, old_token, op.rp.client_id, old_request.nonce)


def test_chooser_is_the_shared_one_and_names_the_client(op: Provider) -> None:
    request = authorization_request(op, op.client(op.rp))
    with browser(op.idp.ca_file) as client:
        chooser = follow(client, client.get(request.url), op.idp.base_url)
    assert "Välj legitimeringsmetod" in chooser.text
    assert "Treserva (OIDC)" in chooser.text

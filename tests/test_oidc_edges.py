"""The OpenID Provider's edges over real sockets: every malformed or unauthenticated request
gets the RFC's error (never a 500), and userinfo takes the bearer token where RFC 6750 allows.

Issue 14 finding 4 (a ``client_assertion`` naming a ``client_secret_basic`` client answered
500) and issue 15 finding 7 (userinfo refused a token in the form body and answered a request
without one with ``error="missing_authorization"``) each have a regression test here, beside
the rest of their class.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.oauth2.rfc7523 import private_key_jwt_sign
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.conftest import IdpUnderTest
from tests.helpers.support import browser, reason_code, tls_context
from tests.test_oidc import (
    Provider,
    RegisteredRp,
    add_client,
    authorization_request,
    card_login,
    query_of,
)

BASIC_CALLBACK = "https://edge-basic.example.test/cb"
JWT_CALLBACK = "https://edge-jwt.example.test/cb"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def edge(idp: IdpUnderTest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """Two clients of their own: one with a secret, one with a key (``private_key_jwt``)."""
    secret = add_client(idp, "edge-basic", "--name", "Edge basic", "--redirect-uri", BASIC_CALLBACK)
    key = RSAKey.generate_key(2048, private=True)
    key_file = tmp_path_factory.mktemp("edge-jwt") / "public.pem"
    key_file.write_bytes(key.as_pem(private=False))
    add_client(
        idp, "edge-jwt", "--name", "Edge JWT", "--redirect-uri", JWT_CALLBACK,
        "--auth-method", "private_key_jwt", "--public-key", str(key_file),
    )  # fmt: skip
    metadata = httpx.get(
        f"{idp.base_url}/.well-known/openid-configuration", verify=tls_context(idp.ca_file)
    ).json()
    basic = RegisteredRp("edge-basic", BASIC_CALLBACK, secret=secret)
    provider = Provider(
        idp=idp,
        metadata=metadata,
        rp=basic,
        other=basic,
        jwt_rp=RegisteredRp("edge-jwt", JWT_CALLBACK, private_key=key),
    )
    yield provider
    for client in provider.opened:
        client.close()


@pytest.fixture(scope="module")
def http(edge: Provider) -> Iterator[httpx.Client]:
    """One keep-alive connection for many requests: a request that kills it shows up too."""
    with httpx.Client(verify=tls_context(edge.idp.ca_file), timeout=15) as client:
        yield client


@pytest.fixture(scope="module")
def access_token(edge: Provider) -> str:
    """A real access token of edge-basic, from a card login."""
    rp = edge.client(edge.rp)
    request = authorization_request(edge, rp)
    with browser(edge.idp.ca_file, edge.idp.card("anna")) as client:
        callback = card_login(edge, client, request, BASIC_CALLBACK)
    token = rp.fetch_token(
        edge.metadata["token_endpoint"],
        authorization_response=callback,
        code_verifier=request.verifier,
    )
    return str(token["access_token"])


def basic_auth(client_id: str, secret: str) -> dict[str, str]:
    credentials = f"{urllib.parse.quote(client_id)}:{urllib.parse.quote(secret)}"
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def code_form(callback: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": generate_token(43),
        "redirect_uri": callback,
        "code_verifier": generate_token(48),
        **extra,
    }


def assertion_form(assertion: str, **extra: str) -> dict[str, str]:
    return code_form(
        JWT_CALLBACK, client_assertion_type=ASSERTION_TYPE, client_assertion=assertion, **extra
    )


def claims_for(edge: Provider, client_id: str = "edge-jwt", **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": edge.metadata["token_endpoint"],
        "iat": now,
        "exp": now + 300,
        "jti": generate_token(20),
        **changes,
    }
    return {name: value for name, value in claims.items() if value is not None}


def signed(claims: dict[str, Any], key: RSAKey, **header: Any) -> str:
    return jwt.encode({"alg": "RS256", **header}, claims, key, algorithms=["RS256", "PS256"])


def unsigned(header: dict[str, Any], claims: Any) -> str:
    def part(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}.AAAA"


def assert_invalid_client(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic realm=")
    assert "access_token" not in response.text


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text[:500]
    assert response.json()["error"] == error, response.text[:500]
    assert "access_token" not in response.json()


# --- finding 4: client authentication never ends in a 500 ----------------------------------------


def test_assertion_naming_a_client_secret_client_is_invalid_client(
    edge: Provider, http: httpx.Client
) -> None:
    """The reported case: edge-basic has no keys, so joserfc's MissingKeyError was a 500."""
    key = RSAKey.generate_key(2048, private=True)
    assertion = private_key_jwt_sign(key, "edge-basic", edge.metadata["token_endpoint"])
    response = http.post(edge.metadata["token_endpoint"], data=assertion_form(assertion))
    assert_invalid_client(response)
    # The connection stays usable: the next request on it gets its answer.
    assert http.get(edge.metadata["jwks_uri"]).status_code == 200


def _assertions(edge: Provider) -> dict[str, str]:
    """Client assertions that must each fail client authentication."""
    key = edge.jwt_rp.private_key
    assert key is not None
    stranger = RSAKey.generate_key(2048, private=True)
    now = int(time.time())
    return {
        "wrong key": signed(claims_for(edge), stranger),
        "unsigned (alg none)": unsigned({"alg": "none"}, claims_for(edge)),
        "HS256 (a shared-secret algorithm)": unsigned({"alg": "HS256"}, claims_for(edge)),
        "an algorithm discovery does not offer (PS256)": signed(claims_for(edge), key, alg="PS256"),
        "a quote in the kid": signed(claims_for(edge), key, kid='"'),
        "an unknown algorithm with a quote": unsigned({"alg": '"x'}, claims_for(edge)),
        "not a JWT": "not-a-jwt",
        "three empty parts": "..",
        "payload not an object": unsigned({"alg": "RS256"}, ["edge-jwt"]),
        "payload not JSON": "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.AAAA",
        "sub not a string": signed(claims_for(edge, sub=["edge-jwt"]), key),
        "sub with a NUL": signed(claims_for(edge, sub="edge-jwt\x00"), key),
        "sub of an unknown client": signed(claims_for(edge, "edge-nobody"), key),
        "iss other than sub": signed(claims_for(edge, iss="edge-basic"), key),
        "for another audience": signed(claims_for(edge, aud="https://other.example.test/t"), key),
        "expired": signed(claims_for(edge, iat=now - 900, exp=now - 600), key),
        "no exp": signed(claims_for(edge, exp=None), key),
        "exp not a number": signed(claims_for(edge, exp="soon"), key),
        "exp beyond any clock": signed(claims_for(edge, exp=1e300), key),
        "valid for a day": signed(claims_for(edge, exp=now + 86400), key),
        "no jti": signed(claims_for(edge, jti=None), key),
    }


ASSERTION_CASES = [
    "wrong key",
    "unsigned (alg none)",
    "HS256 (a shared-secret algorithm)",
    "an algorithm discovery does not offer (PS256)",
    "a quote in the kid",
    "an unknown algorithm with a quote",
    "not a JWT",
    "three empty parts",
    "payload not an object",
    "payload not JSON",
    "sub not a string",
    "sub with a NUL",
    "sub of an unknown client",
    "iss other than sub",
    "for another audience",
    "expired",
    "no exp",
    "exp not a number",
    "exp beyond any clock",
    "valid for a day",
    "no jti",
]


@pytest.mark.parametrize("case", ASSERTION_CASES)
def test_every_bad_client_assertion_is_invalid_client(
    edge: Provider, http: httpx.Client, case: str
) -> None:
    response = http.post(
        edge.metadata["token_endpoint"], data=assertion_form(_assertions(edge)[case])
    )
    assert_invalid_client(response)


def test_a_good_assertion_gets_past_client_authentication_once(
    edge: Provider, http: httpx.Client
) -> None:
    """The cases above fail for their defect alone: the same assertion done right
    authenticates (the unknown code is then invalid_grant), and its jti only once."""
    assert edge.jwt_rp.private_key is not None
    assertion = signed(claims_for(edge), edge.jwt_rp.private_key)
    first = http.post(edge.metadata["token_endpoint"], data=assertion_form(assertion))
    assert_oauth_error(first, 400, "invalid_grant")
    assert_invalid_client(
        http.post(edge.metadata["token_endpoint"], data=assertion_form(assertion))
    )


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic " + base64.b64encode(b"edge-basic:not-the-secret").decode(),
        "Basic " + base64.b64encode(b"edge-nobody:x").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),  # not UTF-8
        "Basic " + base64.b64encode(b"edge-basic\x00:x").decode(),
        "Basic !!!",
        "Basic",
        "Bearer something",
    ],
)
def test_bad_basic_credentials_are_invalid_client(
    edge: Provider, http: httpx.Client, authorization: str
) -> None:
    response = http.post(
        edge.metadata["token_endpoint"],
        data=code_form(BASIC_CALLBACK),
        headers={"Authorization": authorization},
    )
    assert_invalid_client(response)


def test_no_client_authentication_is_invalid_client(edge: Provider, http: httpx.Client) -> None:
    response = http.post(
        edge.metadata["token_endpoint"], data=code_form(BASIC_CALLBACK, client_id="edge-basic")
    )
    assert_invalid_client(response)


def test_malformed_token_requests_get_their_rfc_error(edge: Provider, http: httpx.Client) -> None:
    token_url = edge.metadata["token_endpoint"]
    assert edge.rp.secret is not None
    auth = basic_auth("edge-basic", edge.rp.secret)
    form = code_form(BASIC_CALLBACK)
    as_json = http.post(token_url, json=form, headers=auth)
    assert_oauth_error(as_json, 400, "invalid_request")
    repeated = urllib.parse.urlencode([*form.items(), ("code", "second")])
    response = http.post(
        token_url,
        content=repeated,
        headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_oauth_error(response, 400, "invalid_request")
    no_grant = {k: v for k, v in form.items() if k != "grant_type"}
    assert_oauth_error(http.post(token_url, data=no_grant, headers=auth), 400, "invalid_request")
    password = {**form, "grant_type": "password"}
    assert_oauth_error(
        http.post(token_url, data=password, headers=auth), 400, "unsupported_grant_type"
    )
    no_code = {k: v for k, v in form.items() if k != "code"}
    assert_oauth_error(http.post(token_url, data=no_code, headers=auth), 400, "invalid_request")
    assert_oauth_error(http.post(token_url, data=form, headers=auth), 400, "invalid_grant")
    # Two ways of authenticating at once (RFC 6749 2.3).
    assert edge.jwt_rp.private_key is not None
    assertion = signed(claims_for(edge), edge.jwt_rp.private_key)
    both = http.post(token_url, data=assertion_form(assertion), headers=auth)
    assert_oauth_error(both, 400, "invalid_request")


# --- issue 15 finding 7: userinfo takes the token where RFC 6750 allows ------------------------


def test_userinfo_takes_the_token_in_a_form_body(
    edge: Provider, http: httpx.Client, access_token: str
) -> None:
    """pyoidc's default: POST, application/x-www-form-urlencoded, access_token=…"""
    response = http.post(edge.metadata["userinfo_endpoint"], data={"access_token": access_token})
    assert response.status_code == 200, response.text
    assert response.json()["employeeHsaId"] == "SE2120001355-E0001"
    assert response.headers["cache-control"] == "no-store"
    in_header = http.get(
        edge.metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {access_token}"}
    )
    assert in_header.status_code == 200 and in_header.json() == response.json()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_userinfo_without_a_token_gets_a_bare_bearer_challenge(
    edge: Provider, http: httpx.Client, method: str
) -> None:
    """RFC 6750 3.1: no credentials, no error code."""
    for headers in ({}, {"Authorization": "Basic ZWRnZTp4"}):
        response = http.request(method, edge.metadata["userinfo_endpoint"], headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "error" not in response.text


def test_userinfo_with_an_invalid_token_says_invalid_token(
    edge: Provider, http: httpx.Client
) -> None:
    url = edge.metadata["userinfo_endpoint"]
    for response in (
        http.post(url, data={"access_token": "not-a-token"}),
        http.get(url, headers={"Authorization": "Bearer not-a-token"}),
        http.get(url, headers={"Authorization": "Bearer " + "a" * 5000}),
    ):
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge


def test_userinfo_refuses_a_token_sent_twice_or_in_the_query(
    edge: Provider, http: httpx.Client, access_token: str
) -> None:
    url = edge.metadata["userinfo_endpoint"]
    bearer = {"Authorization": f"Bearer {access_token}"}
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    twice_in_body = urllib.parse.urlencode([("access_token", access_token)] * 2)
    refused = {
        "header and body": http.post(url, data={"access_token": access_token}, headers=bearer),
        "twice in the body": http.post(url, content=twice_in_body, headers=form_type),
        "in the query": http.get(url, params={"access_token": access_token}),
        "query and header": http.get(url, params={"access_token": access_token}, headers=bearer),
        "multipart body": http.post(url, files={"x": b""}, data={"access_token": access_token}),
        "empty": http.post(url, data={"access_token": ""}),
    }
    for name, response in refused.items():
        assert response.status_code == 400, name
        assert response.json()["error"] == "invalid_request", name
        assert 'error="invalid_request"' in response.headers["www-authenticate"], name
        assert "employeeHsaId" not in response.text, name


# --- the other endpoints -------------------------------------------------------------------------


def test_end_session_with_a_hint_authlib_cannot_quote_is_refused(
    edge: Provider, http: httpx.Client
) -> None:
    """joserfc's error text quotes the kid; authlib raised ValueError on it (a 500)."""
    assert edge.jwt_rp.private_key is not None
    hint = signed({"iss": edge.metadata["issuer"]}, edge.jwt_rp.private_key, kid='"')
    for params in (
        {"id_token_hint": hint},
        [("client_id", "edge-basic"), ("client_id", "edge-jwt")],
    ):
        response = http.get(edge.metadata["end_session_endpoint"], params=params)
        assert response.status_code == 400, response.text[:300]
        assert reason_code(response.text) == "oidc_invalid_logout"


def test_repeated_authorization_parameter_goes_back_as_invalid_request(edge: Provider) -> None:
    request = authorization_request(edge, edge.client(edge.rp))
    with browser(edge.idp.ca_file) as client:
        response = client.get(request.url + "&nonce=second")
    assert response.status_code == 302
    answer = query_of(response.headers["location"])
    assert answer["error"] == "invalid_request" and answer["state"] == request.state
    assert "code" not in answer


# A small generator of malformed input for every OIDC endpoint: the assertion is the class,
# no 5xx and no traceback, whatever the input.
_JUNK = ["", "\x00", "\udcff", "a" * 3000, '"', "\r\n", "{}"]
_NAMES = [
    "client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "max_age",
    "prompt", "code_challenge", "id_token_hint", "post_logout_redirect_uri", "access_token",
    "grant_type", "code", "code_verifier", "client_assertion", "client_assertion_type",
]  # fmt: skip
_PATHS = [
    "/oidc/authorize", "/oidc/token", "/oidc/userinfo", "/oidc/end-session",
    "/oidc/end-session/confirm", "/oidc/jwks", "/.well-known/openid-configuration",
]  # fmt: skip
_PATHS_WITH_PARAMETERS = _PATHS[:5]
_BODIES = [
    (b"\xff\xfe\x00", "application/x-www-form-urlencoded"),
    (b"a=%FF%FE&a=1&=&&b", "application/x-www-form-urlencoded"),
    (b'{"grant_type": "authorization_code"}', "application/json"),
    (b"--x\r\nbroken", "multipart/form-data; boundary=x"),
    (b"x", "multipart/form-data"),
]


def test_no_oidc_endpoint_answers_malformed_input_with_a_server_error(
    edge: Provider, http: httpx.Client
) -> None:
    base = edge.idp.base_url
    valid = {
        "client_id": "edge-basic",
        "response_type": "code",
        "redirect_uri": BASIC_CALLBACK,
        "scope": "openid",
        "code_challenge": generate_token(43),
        "code_challenge_method": "S256",
    }
    tried = 0
    for path in _PATHS:
        for name in _NAMES if path in _PATHS_WITH_PARAMETERS else _NAMES[:1]:
            for junk in _JUNK:
                # Bytes, so that "\udcff" goes out as the raw octet %FF (not UTF-8).
                value = junk.encode("utf-8", "surrogateescape")
                query = urllib.parse.urlencode({**valid, name: value})
                for response in (
                    http.get(f"{base}{path}?{query}"),
                    http.post(f"{base}{path}", content=query, headers={
                        "Content-Type": "application/x-www-form-urlencoded",
                    }),
                ):  # fmt: skip
                    tried += 1
                    assert response.status_code < 500, (path, name, junk, response.text[:300])
                    assert "Traceback" not in response.text
        for body, content_type in _BODIES:
            tried += 1
            response = http.post(
                f"{base}{path}", content=body, headers={"Content-Type": content_type}
            )
            assert response.status_code < 500, (path, body, response.text[:300])
    assert tried > 1000

"""The OpenID Provider against pyoidc (PyPI ``oic``), a relying party nobody here wrote.

pyoidc learns everything from the discovery document (endpoints, JWKS, issuer); it makes the
authorization request with PKCE S256, redeems the code with client_secret_basic, verifies the
ID token itself (signature against the published JWKS, issuer, audience, expiry, nonce, acr) and
asks userinfo the way it does by default: POST with the bearer token in the form body
(RFC 6750 §2.2). The browser is the httpx stand-in presenting a test card.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from oic import rndstr
from oic.oauth2.exception import OtherError
from oic.oauth2.message import ErrorResponse
from oic.oic import Client
from oic.oic.message import (
    AccessTokenResponse,
    AuthorizationRequest,
    AuthorizationResponse,
    OpenIDSchema,
    RegistrationResponse,
)
from oic.utils.authn.client import CLIENT_AUTHN_METHOD
from oic.utils.keyio import KeyBundle, KeyJar
from oic.utils.settings import OicClientSettings

from tests.conftest import IdpUnderTest
from tests.helpers.support import browser, parse_page
from tests.interop.saml_peers import EID_LOA, SAMBI_LOA, forms_of

# Every request pyoidc makes is checked against the test CA; an unverified one fails the test.
pytestmark = pytest.mark.filterwarnings("error::urllib3.exceptions.InsecureRequestWarning")

SAMBI_CALLBACK = "https://pyoidc-rp.example.test/callback"
EID_CALLBACK = "https://pyoidc-eid-rp.example.test/callback"


class VerifyingKeyJar(KeyJar):
    """pyoidc's key jar, except that it verifies TLS for a jwks_uri on localhost too.

    ``KeyJar.add`` fetches any ``https://localhost:…`` JWKS with verification switched off;
    the IdP under test lives on localhost, and its keys must come over verified TLS.
    """

    def add(self, issuer: str, url: str, **kwargs: object) -> KeyBundle:
        bundle = self.keybundle_cls(
            source=url, verify_ssl=self.verify_ssl, timeout=self.timeout, **kwargs
        )
        self.add_kb(issuer, bundle)
        return bundle


@dataclass
class PyoidcRp:
    """One registered client as pyoidc holds it; a fresh pyoidc Client for each login."""

    client_id: str
    secret: str
    redirect_uri: str
    idp: IdpUnderTest

    def client(self) -> Client:
        settings = OicClientSettings(verify_ssl=str(self.idp.ca_file), timeout=30)
        client = Client(
            client_authn_method=CLIENT_AUTHN_METHOD,
            keyjar=VerifyingKeyJar(verify_ssl=settings.verify_ssl, timeout=30),
            settings=settings,
        )
        # Discovery only: endpoints, issuer and the JWKS (loaded into pyoidc's key jar).
        client.provider_config(self.idp.base_url)
        client.store_registration_info(
            RegistrationResponse(
                client_id=self.client_id,
                client_secret=self.secret,
                redirect_uris=[self.redirect_uri],
                token_endpoint_auth_method="client_secret_basic",
            )
        )
        client.redirect_uris = [self.redirect_uri]
        return client


@dataclass
class Login:
    """One authorization request as pyoidc made it."""

    client: Client
    request: AuthorizationRequest
    url: str
    state: str
    verifier: str


def start(rp: PyoidcRp, **extra: object) -> Login:
    client = rp.client()
    state, nonce = rndstr(32), rndstr(32)
    pkce, verifier = client.add_code_challenge()
    assert pkce["code_challenge_method"] == "S256"
    request = client.construct_AuthorizationRequest(
        request_args={
            "response_type": "code",
            "scope": ["openid", "profile"],
            "state": state,
            "nonce": nonce,
            "redirect_uri": rp.redirect_uri,
            **pkce,
            **extra,
        }
    )
    return Login(client, request, request.request(client.authorization_endpoint), state, verifier)


def to_callback(
    client: httpx.Client, response: httpx.Response, base_url: str, callback: str
) -> httpx.Response | str:
    """Follow the IdP's redirects; stop at the RP's callback (as a URL) or at a page."""
    while response.status_code in (302, 303):
        location = response.headers["location"]
        if location.startswith(callback):
            return location
        if location.startswith("/"):
            location = base_url + location
        response = client.get(location)
    return response


def card_callback(idp: IdpUnderTest, client: httpx.Client, login: Login, callback: str) -> str:
    chooser = to_callback(client, client.get(login.url), idp.base_url, callback)
    assert isinstance(chooser, httpx.Response) and "Välj legitimeringsmetod" in chooser.text
    href = parse_page(chooser.text).links["method-this-device"]
    outcome = to_callback(client, client.get(href), idp.base_url, callback)
    assert isinstance(outcome, str), outcome.text[:2000]
    return outcome


def sso_callback(idp: IdpUnderTest, client: httpx.Client, login: Login, callback: str) -> str:
    outcome = to_callback(client, client.get(login.url), idp.base_url, callback)
    assert isinstance(outcome, str), outcome.text[:2000]
    return outcome


def way_back(page: httpx.Response, callback: str) -> str:
    """The IdP error page's "Tillbaka till tjänsten" to the RP's redirect URI, as a URL."""
    for form in forms_of(page.text):
        if form.action.startswith(callback) and "Tillbaka till tjänsten" in form.text:
            assert form.method == "get", form
            return f"{form.action}?{urllib.parse.urlencode(form.fields)}"
    for href, text in re.findall(r'<a [^>]*href="([^"]+)"[^>]*>(.*?)</a>', page.text, re.S):
        if href.startswith(callback) and "Tillbaka till tjänsten" in text:
            return href.replace("&amp;", "&")
    raise AssertionError(f"no way back to {callback} on the page: {page.text[:3000]}")


def redeem(login: Login, callback: str) -> AccessTokenResponse:
    """pyoidc parses the callback and redeems its code; it verifies the ID token as it goes."""
    answer = login.client.parse_response(
        AuthorizationResponse, info=urllib.parse.urlsplit(callback).query, sformat="urlencoded"
    )
    assert isinstance(answer, AuthorizationResponse), answer.to_dict()
    assert answer["state"] == login.state
    token = login.client.do_access_token_request(
        state=login.state,
        request_args={"code": answer["code"], "code_verifier": login.verifier},
        authn_method="client_secret_basic",
    )
    assert isinstance(token, AccessTokenResponse), token.to_dict()
    # pyoidc's own checks of the ID token against the request: nonce, acr_values.
    login.client.verify_id_token(token["id_token"], login.request)
    return token


@pytest.fixture(scope="module")
def py_oidc_rps(idp: IdpUnderTest) -> Iterator[dict[str, PyoidcRp]]:
    """Two clients registered with `idp oidc client add`: a Sambi one and a Swedish eID one."""
    made: dict[str, PyoidcRp] = {}
    for name, callback, profile in (
        ("pyoidc-rp", SAMBI_CALLBACK, "sambi"),
        ("pyoidc-eid-rp", EID_CALLBACK, "swedish-eid"),
    ):
        result = idp.idp_cli(
            "oidc",
            "client",
            "add",
            name,
            "--name",
            f"pyoidc ({profile})",
            "--redirect-uri",
            callback,
            "--claims",
            "employeeHsaId,name,given_name,family_name",
            "--acr-profile",
            profile,
        )
        assert result.returncode == 0, result.stderr
        secret = re.search(r"^client_secret: (\S+)$", result.stdout, re.MULTILINE)
        assert secret, result.stdout
        made[name] = PyoidcRp(name, secret.group(1), callback, idp)
    yield made


def test_discovery_alone_configures_pyoidc(py_oidc_rps: dict[str, PyoidcRp]) -> None:
    rp = py_oidc_rps["pyoidc-rp"]
    client = rp.client()
    assert client.provider_info["issuer"] == rp.idp.base_url
    assert client.provider_info["code_challenge_methods_supported"] == ["S256"]
    assert client.authorization_endpoint.startswith(rp.idp.base_url)
    # The published signing keys are in pyoidc's key jar under the issuer.
    assert client.keyjar.get_signing_key("RSA", owner=rp.idp.base_url)


def test_code_flow_with_pkce_and_userinfo_in_the_body(
    py_oidc_rps: dict[str, PyoidcRp],
) -> None:
    rp = py_oidc_rps["pyoidc-rp"]
    login = start(rp)
    assert "code_challenge_method=S256" in login.url
    with browser(rp.idp.ca_file, rp.idp.card("anna")) as client:
        callback = card_callback(rp.idp, client, login, rp.redirect_uri)
    token = redeem(login, callback)
    id_token = token["id_token"]
    assert id_token["employeeHsaId"] == "SE2120001355-E0001"
    assert id_token["acr"] == SAMBI_LOA.format(3)
    assert id_token["sub"] and "SE2120001355" not in id_token["sub"]
    # pyoidc's default: POST, access token in the form body.
    userinfo = login.client.do_user_info_request(state=login.state)
    assert isinstance(userinfo, OpenIDSchema), userinfo.to_dict()
    assert userinfo["sub"] == id_token["sub"]
    assert userinfo["employeeHsaId"] == "SE2120001355-E0001"
    assert userinfo["name"] == "Anna Andersson"


def test_code_with_the_wrong_verifier_is_refused(py_oidc_rps: dict[str, PyoidcRp]) -> None:
    rp = py_oidc_rps["pyoidc-rp"]
    login = start(rp)
    with browser(rp.idp.ca_file, rp.idp.card("bertil")) as client:
        callback = card_callback(rp.idp, client, login, rp.redirect_uri)
    answer = login.client.parse_response(
        AuthorizationResponse, info=urllib.parse.urlsplit(callback).query, sformat="urlencoded"
    )
    _, other_verifier = login.client.add_code_challenge()
    refused = login.client.do_access_token_request(
        state=login.state,
        request_args={"code": answer["code"], "code_verifier": other_verifier},
        authn_method="client_secret_basic",
    )
    assert isinstance(refused, ErrorResponse) and refused["error"] == "invalid_grant", refused


def test_pairwise_subject_is_stable_per_client_and_differs_between_clients(
    py_oidc_rps: dict[str, PyoidcRp],
) -> None:
    sambi, eid = py_oidc_rps["pyoidc-rp"], py_oidc_rps["pyoidc-eid-rp"]
    with browser(sambi.idp.ca_file, sambi.idp.card("anna")) as client:
        first = start(sambi)
        first_token = redeem(first, card_callback(sambi.idp, client, first, SAMBI_CALLBACK))
        again = start(sambi)
        again_token = redeem(again, sso_callback(sambi.idp, client, again, SAMBI_CALLBACK))
        other = start(eid)
        other_token = redeem(other, sso_callback(eid.idp, client, other, EID_CALLBACK))
    assert first_token["id_token"]["sub"] == again_token["id_token"]["sub"]
    assert first_token["id_token"]["sub"] != other_token["id_token"]["sub"]
    # The Swedish eID client's own LoA URI when it asks for none.
    assert other_token["id_token"]["acr"] == EID_LOA.format(3)


def test_requested_acr_that_is_met(py_oidc_rps: dict[str, PyoidcRp]) -> None:
    rp = py_oidc_rps["pyoidc-rp"]
    login = start(rp, acr_values=[EID_LOA.format(3)])
    with browser(rp.idp.ca_file, rp.idp.card("anna")) as client:
        token = redeem(login, card_callback(rp.idp, client, login, rp.redirect_uri))
    assert token["id_token"]["acr"] == EID_LOA.format(3)


def test_requested_acr_that_is_not_met_is_caught_by_pyoidc(
    py_oidc_rps: dict[str, PyoidcRp],
) -> None:
    # acr_values is voluntary (OpenID Connect Core 3.1.2.1): the IdP answers with what it did,
    # loa3, never claiming loa4, and pyoidc refuses the ID token for it.
    rp = py_oidc_rps["pyoidc-rp"]
    login = start(rp, acr_values=[SAMBI_LOA.format(4)])
    with browser(rp.idp.ca_file, rp.idp.card("anna")) as client:
        callback = card_callback(rp.idp, client, login, rp.redirect_uri)
    with pytest.raises(OtherError, match="acr mismatch"):
        redeem(login, callback)


def error_at_callback(rp: PyoidcRp, login: Login, callback: str) -> ErrorResponse:
    answer = login.client.parse_response(
        AuthorizationResponse, info=urllib.parse.urlsplit(callback).query, sformat="urlencoded"
    )
    assert isinstance(answer, ErrorResponse), answer.to_dict()
    assert answer["state"] == login.state
    return answer


def test_cancel_on_the_chooser_comes_back_as_access_denied(
    py_oidc_rps: dict[str, PyoidcRp],
) -> None:
    rp = py_oidc_rps["pyoidc-rp"]
    login = start(rp)
    with browser(rp.idp.ca_file, rp.idp.card("anna")) as client:
        chooser = to_callback(client, client.get(login.url), rp.idp.base_url, rp.redirect_uri)
        assert isinstance(chooser, httpx.Response)
        cancel = [form for form in forms_of(chooser.text) if "Avbryt" in form.text]
        assert len(cancel) == 1, chooser.text[:3000]
        target = urllib.parse.urljoin(str(chooser.url), cancel[0].action)
        outcome = to_callback(
            client, client.post(target, data=cancel[0].fields), rp.idp.base_url, rp.redirect_uri
        )
    callback = outcome if isinstance(outcome, str) else way_back(outcome, rp.redirect_uri)
    assert error_at_callback(rp, login, callback)["error"] == "access_denied"


def test_refused_card_comes_back_as_access_denied(py_oidc_rps: dict[str, PyoidcRp]) -> None:
    rp = py_oidc_rps["pyoidc-rp"]
    login = start(rp)
    with browser(rp.idp.ca_file, rp.idp.card("expired")) as client:
        chooser = to_callback(client, client.get(login.url), rp.idp.base_url, rp.redirect_uri)
        assert isinstance(chooser, httpx.Response)
        href = parse_page(chooser.text).links["method-this-device"]
        outcome = to_callback(client, client.get(href), rp.idp.base_url, rp.redirect_uri)
    callback = outcome if isinstance(outcome, str) else way_back(outcome, rp.redirect_uri)
    assert error_at_callback(rp, login, callback)["error"] == "access_denied"

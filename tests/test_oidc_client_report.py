"""`idp oidc client check`: the OIDC counterpart of `idp metadata validate`."""

from __future__ import annotations

import dataclasses

from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

from idp.federation.oidc_client_report import oidc_client_report
from idp.oidc.clients import RegisteredClient
from tests.conftest import IdpUnderTest

GOOD = RegisteredClient(
    client_id="rp",
    name="RP",
    auth_method="client_secret_basic",
    secret_hash="0" * 64,
    jwks=None,
    redirect_uris=("https://rp.example.test/cb",),
    post_logout_redirect_uris=(),
    claims=("employeeHsaId",),
    id_token_alg="RS256",
    acr_profile="sambi",
)


def _failed(client: RegisteredClient) -> dict[str, str]:
    return {check.name: check.detail for check in oidc_client_report(client).failed()}


def test_good_client_passes() -> None:
    report = oidc_client_report(GOOD)
    assert report.ok, report.failed()


def test_each_problem_is_named() -> None:
    weak = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505 (a weak key on purpose)
    jwks = {"keys": [{**weak.as_dict(private=False), "kid": "weak"}]}
    client = dataclasses.replace(
        GOOD,
        auth_method="private_key_jwt",
        jwks=jwks,
        redirect_uris=("http://rp.example.test/cb",),
        claims=("employeeHsaId", "personnummer_x"),
        acr_profile="loa4",
    )
    failed = _failed(client)
    assert failed["redirect-uris"] == ("http://rp.example.test/cb: a redirect URI must use https")
    assert failed["keys"] == "weak is a 1024-bit RSA key (minimum 2048)"
    assert failed["claims"] == "the IdP does not release: personnummer_x"
    assert failed["acr"] == "unknown acr profile loa4"


def test_check_command(idp: IdpUnderTest) -> None:
    added = idp.idp_cli(
        "oidc",
        "client",
        "add",
        "report-rp",
        "--name",
        "Report RP",
        "--redirect-uri",
        "https://report-rp.example.test/cb",
    )
    assert added.returncode == 0, added.stderr
    result = idp.idp_cli("oidc", "client", "check", "report-rp")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS redirect-uris: exact match" in result.stdout
    missing = idp.idp_cli("oidc", "client", "check", "no-such-rp")
    assert missing.returncode != 0 and "no client no-such-rp" in missing.stderr

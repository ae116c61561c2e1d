"""Mock Treserva's OpenID Connect login against the real IdP: discovery, code flow with PKCE,
ID token checked by authlib against the IdP's JWKS, HSA-ID from ``employeeHsaId``."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sp_demo.app import create_app
from sp_demo.config import Settings
from sp_demo.db import seed_demo_users
from tests.conftest import IdpUnderTest
from tests.helpers.flows import login_with_card
from tests.helpers.support import browser

SP_BASE = "https://treserva-oidc.example.test"


@pytest.fixture(scope="module")
def client_secret(idp: IdpUnderTest) -> str:
    added = idp.idp_cli(
        "oidc",
        "client",
        "add",
        "treserva-oidc-test",
        "--name",
        "Treserva (demo)",
        "--redirect-uri",
        f"{SP_BASE}/oidc/callback",
        "--post-logout-redirect-uri",
        f"{SP_BASE}/",
        "--claims",
        "employeeHsaId,given_name,family_name",
    )
    assert added.returncode == 0, added.stderr
    return next(
        line.split(":", 1)[1].strip()
        for line in added.stdout.splitlines()
        if line.startswith("client_secret:")
    )


@pytest.fixture
def treserva(idp: IdpUnderTest, client_secret: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        base_url=SP_BASE,
        var_dir=tmp_path,
        sp_key=idp.pki.sp_signing_key,
        sp_cert=idp.pki.sp_signing_cert,
        idp_metadata_url=f"{idp.base_url}/saml/metadata",
        tls_ca_file=idp.pki.tls_ca_cert,
        session_secret="oidc-secret-" + "z" * 32,
        oidc_issuer=idp.base_url,
        oidc_client_id="treserva-oidc-test",
        oidc_client_secret=client_secret,
    )
    app = create_app(settings)
    with app.state.database.session() as session:
        seed_demo_users(session)
    with TestClient(app, base_url=SP_BASE, follow_redirects=False) as client:
        yield client


def test_oidc_login_shows_the_same_permissions(idp: IdpUnderTest, treserva: TestClient) -> None:
    assert 'id="oidc-login"' in treserva.get("/").text
    started = treserva.get("/oidc/login")
    assert started.status_code == 302, started.text
    authorize = started.headers["location"]
    assert authorize.startswith(f"{idp.base_url}/oidc/authorize?")
    assert "code_challenge_method=S256" in authorize
    with browser(idp.ca_file, idp.card("anna")) as client:
        back = login_with_card(client, authorize, idp.base_url)
    # The IdP sends the browser back to Treserva's redirect URI with the code.
    location = back.headers.get("location", "")
    assert location.startswith(f"{SP_BASE}/oidc/callback?"), (back.status_code, back.text[:500])
    query = urllib.parse.urlsplit(location).query
    answered = treserva.get(f"/oidc/callback?{query}")
    assert answered.status_code == 303, answered.text
    page = treserva.get("/me")
    assert page.status_code == 200
    assert "SE2120001355-E0001" in page.text and "Anna Andersson" in page.text
    assert "Hemtjänst Centrum" in page.text
    # Logging out ends the session at the IdP's end-session endpoint.
    out = treserva.get("/logout")
    assert out.status_code == 303
    assert out.headers["location"].startswith(f"{idp.base_url}/oidc/end-session?")


def test_tampered_state_is_refused(idp: IdpUnderTest, treserva: TestClient) -> None:
    treserva.get("/oidc/login")
    refused = treserva.get("/oidc/callback?code=made-up&state=not-the-one")
    assert refused.status_code >= 400
    assert '<code id="reason">invalid</code>' in refused.text
    assert "/me" not in refused.headers.get("location", "")

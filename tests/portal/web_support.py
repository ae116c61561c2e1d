"""Logging in to the portal through the real IdP (OIDC code flow with a card), for tests."""

from __future__ import annotations

import re
import urllib.parse

import httpx
from fastapi.testclient import TestClient

from tests.conftest import IdpUnderTest
from tests.helpers.flows import follow, login_with_card
from tests.helpers.support import browser, parse_page


def register_oidc_client(idp: IdpUnderTest, client_id: str, base_url: str) -> str:
    """`idp oidc client add` for a portal at ``base_url``; returns the client secret."""
    idp.idp_cli("oidc", "client", "remove", client_id)
    added = idp.idp_cli(
        "oidc",
        "client",
        "add",
        client_id,
        "--name",
        "Tjänsteportalen (test)",
        "--redirect-uri",
        f"{base_url}/oidc/callback",
        "--post-logout-redirect-uri",
        f"{base_url}/",
        "--claims",
        "employeeHsaId,given_name,family_name",
    )
    assert added.returncode == 0, added.stderr
    return next(
        line.split(":", 1)[1].strip()
        for line in added.stdout.splitlines()
        if line.startswith("client_secret:")
    )


def idp_login(
    idp: IdpUnderTest, client: httpx.Client, authorize: str, choose: str | None
) -> httpx.Response:
    """Log in at the IdP with the browser's card; pick ``choose`` if asked "Välj tjänste-id"."""
    back = login_with_card(client, authorize, idp.base_url)
    if back.status_code == 200 and "Välj tjänste-id" in back.text:
        assert choose is not None, "the IdP asks which tjänste-id"
        ref = re.search(r'name="ref" value="([^"]+)"', back.text).group(1)
        chosen = client.post(f"{idp.base_url}/login/choose", data={"ref": ref, "hsa_id": choose})
        back = follow(client, chosen, idp.base_url)
    return back


def log_in(idp: IdpUnderTest, portal: TestClient, card: str, choose: str | None = None) -> None:
    """Log ``portal`` (an in-process client) in with the test PKI's ``card``."""
    started = portal.get("/login")
    assert started.status_code == 302, started.text
    with browser(idp.ca_file, idp.card(card)) as client:
        back = idp_login(idp, client, started.headers["location"], choose)
    location = back.headers.get("location", "")
    assert "/oidc/callback?" in location, (back.status_code, back.text[:300])
    answered = portal.get(f"/oidc/callback?{urllib.parse.urlsplit(location).query}")
    assert answered.status_code == 303, answered.text


def csrf_of(html: str) -> str:
    for form in parse_page(html).forms:
        if "csrf" in form["fields"]:
            return form["fields"]["csrf"]
    raise AssertionError("no form with a csrf field")

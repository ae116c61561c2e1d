"""The steps a browser takes through a login, over real sockets."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

import httpx

from tests.helpers.support import parse_page


@dataclass
class Step:
    response: httpx.Response

    @property
    def html(self) -> str:
        return self.response.text


def follow(client: httpx.Client, response: httpx.Response, base_url: str) -> httpx.Response:
    """Follow redirects by hand, on this machine only: a redirect to another host (an RP's
    redirect URI, say) is returned unfollowed for the test to inspect."""
    while response.status_code in (302, 303):
        location = response.headers["location"]
        if location.startswith("/"):
            location = base_url + location
        if urllib.parse.urlsplit(location).hostname not in ("localhost", "127.0.0.1", "::1"):
            return response
        response = client.get(location)
    return response


def started_login(answer: httpx.Response) -> str | None:
    """The reference of the pending login whose chooser ``answer`` is (the IdP answers an
    AuthnRequest that needs the user with the chooser itself), or None if it is not one."""
    if answer.status_code != 200:
        return None
    href = parse_page(answer.text).links.get("method-other-device", "")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)
    return query["ref"][0] if href.startswith("/login/other-device?") and "ref" in query else None


def open_login(client: httpx.Client, login_url: str, base_url: str) -> httpx.Response:
    """GET the SP's redirect to the IdP and land on the chooser (or wherever it leads)."""
    return follow(client, client.get(login_url), base_url)


def choose_this_device(
    client: httpx.Client, chooser: httpx.Response, base_url: str
) -> httpx.Response:
    """Click "SITHS eID på denna enhet" and follow back to the IdP's main origin."""
    href = parse_page(chooser.text).links["method-this-device"]
    return follow(client, client.get(href), base_url)


def posted_form(response: httpx.Response) -> tuple[str, dict[str, str]]:
    form = parse_page(response.text).forms[0]
    return form["action"], form["fields"]


def login_with_card(client: httpx.Client, login_url: str, base_url: str) -> httpx.Response:
    chooser = open_login(client, login_url, base_url)
    assert chooser.status_code == 200, chooser.text
    return choose_this_device(client, chooser, base_url)

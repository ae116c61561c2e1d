"""Shibboleth SP 3 (Debian's shibd + mod_shib behind a private Apache) against the IdP.

The peer knows the IdP only from its signed metadata; the browser is the httpx stand-in
presenting a SITHS card to the IdP's certificate listener and posting the forms it is given.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import IdpUnderTest
from tests.flows import choose_this_device, posted_form
from tests.interop.shib_peer import ShibbolethPeer, session_page_values, start_shibboleth_peer
from tests.support import browser


@pytest.fixture(scope="module")
def shib_peer(idp: IdpUnderTest) -> Iterator[ShibbolethPeer]:
    peer = start_shibboleth_peer(
        idp_metadata_xml=idp.idp_metadata_file.read_text(encoding="utf-8"),
        idp_metadata_signer=idp.pki.idp_signing_cert,
        sp_metadata_dir=idp.sp_metadata_dir,
        tls_cert=idp.pki.tls_server_cert,
        tls_key=idp.pki.tls_server_key,
        ca_file=idp.ca_file,
    )
    try:
        yield peer
    finally:
        peer.stop()


def shib_follow(client: httpx.Client, response: httpx.Response) -> httpx.Response:
    """Follow redirects between the SP and the IdP (both on localhost, any port)."""
    while response.status_code in (302, 303):
        response = client.get(response.url.join(response.headers["location"]))
    return response


def shib_post_back(client: httpx.Client, page: httpx.Response) -> httpx.Response:
    """Post the page's (first) form, as the browser does with the IdP's auto-posting form."""
    action, fields = posted_form(page)
    return shib_follow(client, client.post(action, data=fields))


def shib_card_login(client: httpx.Client, peer: ShibbolethPeer, idp: IdpUnderTest, **params):
    chooser = shib_follow(client, client.get(peer.login_url(**params)))
    assert chooser.status_code == 200, chooser.text
    assert "Välj legitimeringsmetod" in chooser.text, chooser.text[:2000]
    return choose_this_device(client, chooser, idp.base_url)


def test_shib_login_with_card_shows_attributes(idp: IdpUnderTest, shib_peer: ShibbolethPeer):
    with browser(idp.ca_file, idp.card("anna")) as client:
        answer = shib_card_login(client, shib_peer, idp)
        action, _ = posted_form(answer)
        assert action == f"{shib_peer.base_url}/Shibboleth.sso/SAML2/POST"
        session = shib_post_back(client, answer)
    assert session.status_code == 200, shib_peer.log()[-3000:]
    values = session_page_values(session.text)
    assert values.get("employeeHsaId") == "SE2120001355-E0001", session.text
    assert values["displayName"] == "Anna Andersson"
    assert values["Authentication Context Class"] == "http://id.elegnamnden.se/loa/1.0/loa3"

"""SimpleSAMLphp 1.19 (Debian) as a saml:SP, under mod_php in a private Apache, against the IdP.

The peer knows the IdP only from its signed metadata, converted by its own metarefresh; the
browser is the httpx stand-in presenting a SITHS card to the IdP's certificate listener.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import IdpUnderTest
from tests.flows import choose_this_device, posted_form
from tests.interop.php_peer import (
    SimpleSamlPhpPeer,
    shown_attributes,
    shown_auth_data,
    start_simplesamlphp_peer,
)
from tests.support import browser


@pytest.fixture(scope="module")
def php_peer(idp: IdpUnderTest) -> Iterator[SimpleSamlPhpPeer]:
    peer = start_simplesamlphp_peer(
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


def php_follow(client: httpx.Client, response: httpx.Response) -> httpx.Response:
    """Follow redirects between the SP and the IdP (both on localhost, any port)."""
    while response.status_code in (302, 303):
        response = client.get(response.url.join(response.headers["location"]))
    return response


def php_post_form(client: httpx.Client, page: httpx.Response) -> httpx.Response:
    action, fields = posted_form(page)
    return php_follow(client, client.post(action, data=fields))


def test_php_login_with_card_shows_attributes(idp: IdpUnderTest, php_peer: SimpleSamlPhpPeer):
    with browser(idp.ca_file, idp.card("anna")) as client:
        chooser = php_follow(client, client.get(php_peer.test_page_url()))
        assert "Välj legitimeringsmetod" in chooser.text, chooser.text[:2000]
        answer = choose_this_device(client, chooser, idp.base_url)
        action, _ = posted_form(answer)
        assert action == php_peer.acs_url
        page = php_post_form(client, answer)
    assert page.status_code == 200, php_peer.log()[-3000:]
    attributes = shown_attributes(page.text)
    assert attributes["http://sambi.se/attributes/1/employeeHsaId"] == ["SE2120001355-E0001"]
    assert attributes["http://sambi.se/attributes/1/givenName"] == ["Anna"]
    auth_data = shown_auth_data(page.text)
    assert auth_data["saml:sp:AuthnContext"] == "http://id.sambi.se/loa/loa3"

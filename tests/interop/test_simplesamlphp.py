"""SimpleSAMLphp 1.19 (Debian) as a saml:SP, under mod_php in a private Apache, against the IdP.

The peer knows the IdP only from its signed metadata, converted by its own metarefresh; its
authsource is the snippet of the IdP's integration guide (Swedish eID Framework profile,
persistent NameID, loa3, encrypted Assertions required). The browser is the httpx stand-in
presenting a SITHS card to the IdP's certificate listener; what the peer received is read off
its own test page (module.php/core/authenticate.php), or off its error page when the IdP said
no.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import IdpUnderTest
from tests.helpers.flows import choose_this_device
from tests.helpers.support import browser, reason_code
from tests.interop.php_peer import (
    SimpleSamlPhpPeer,
    convert_idp_metadata,
    shown_attributes,
    shown_auth_data,
    start_simplesamlphp_peer,
)
from tests.interop.sp_peer_steps import (
    back_to_service,
    follow_redirects,
    integration_snippets,
    post_saml_form,
    press_cancel,
    requested_authn_context,
    saml_form,
)

SAMBI_LOA = "http://id.sambi.se/loa/loa"
EID_LOA = "http://id.elegnamnden.se/loa/1.0/loa"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
HSA_ID = "urn:oid:1.2.752.29.6.2.1"


@pytest.fixture(scope="module")
def php_peer(idp: IdpUnderTest) -> Iterator[SimpleSamlPhpPeer]:
    [authsource] = integration_snippets(idp.base_url, idp.ca_file)[
        "SimpleSAMLphp (config/authsources.php)"
    ]
    peer = start_simplesamlphp_peer(
        idp_metadata_xml=idp.idp_metadata_file.read_text(encoding="utf-8"),
        idp_metadata_signer=idp.pki.idp_signing_cert,
        guide_authsource=authsource,
        sp_metadata_dir=idp.sp_metadata_dir,
        tls_cert=idp.pki.tls_server_cert,
        tls_key=idp.pki.tls_server_key,
        ca_file=idp.ca_file,
    )
    try:
        yield peer
    finally:
        peer.stop()


def php_open(client: httpx.Client, url: str) -> httpx.Response:
    """Start a login at the SP and land on whatever the IdP shows first."""
    return php_open_seen(client, url)[0]


def php_open_seen(client: httpx.Client, url: str) -> tuple[httpx.Response, str]:
    """:func:`php_open`, and the AuthnRequest XML SimpleSAMLphp sent."""
    requests: list[str] = []
    page = follow_redirects(client, client.get(url), requests)
    assert len(requests) == 1, requests
    return page, requests[0]


def php_card_login(
    client: httpx.Client, peer: SimpleSamlPhpPeer, idp: IdpUnderTest, url: str | None = None
) -> tuple[httpx.Response, str]:
    """A whole login through "SITHS eID på denna enhet": the SP's test page and the
    Response XML the IdP had the browser post."""
    chooser = php_open(client, url or peer.test_page_url())
    assert "Välj legitimeringsmetod" in chooser.text, chooser.text[:2000]
    answer = choose_this_device(client, chooser, idp.base_url)
    form = saml_form(answer)
    assert form is not None, answer.text[:2000]
    response_xml = base64.b64decode(form["fields"]["SAMLResponse"]).decode()
    page = post_saml_form(client, answer, peer.acs_url)
    assert page.status_code == 200, peer.log()[-3000:]
    return page, response_xml


def php_error(page: httpx.Response, status: str) -> None:
    """SimpleSAMLphp's error page names the Response's status as ``Responder/<second level>``
    (its saml:Error, with the urn:oasis:names:tc:SAML:2.0:status: prefix shortened)."""
    assert page.status_code >= 400 or "SimpleSAML\\Module\\saml\\Error" in page.text
    assert f"Responder/{status}" in page.text, page.text[:4000]
    assert HSA_ID not in page.text


def test_php_login_with_card_shows_attributes(idp: IdpUnderTest, php_peer: SimpleSamlPhpPeer):
    with browser(idp.ca_file, idp.card("anna")) as client:
        page, _ = php_card_login(client, php_peer, idp)
    auth_data = shown_auth_data(page.text)
    # Released because its metadata requests them (the authsource's 'attributes' and 'name').
    assert "RequestedAttribute" in php_peer.metadata_xml
    assert auth_data["Attributes"] == {
        HSA_ID: ["SE2120001355-E0001"],
        "urn:oid:2.16.840.1.113730.3.1.241": ["Anna Andersson"],
        "urn:oid:2.5.4.42": ["Anna"],
        "urn:oid:2.5.4.4": ["Andersson"],
        "urn:oid:0.9.2342.19200300.100.1.3": ["anna.andersson@example.invalid"],
        "urn:oid:2.5.4.10": ["Göteborgs Stad"],
    }
    # The page's attribute table shows them (under SimpleSAMLphp's names for the OIDs).
    shown = shown_attributes(page.text)
    assert ["SE2120001355-E0001"] in shown.values() and ["Anna Andersson"] in shown.values()
    # The NameID the authsource asks for, for this SP and from this IdP.
    assert shown["Format"] == [PERSISTENT]
    assert shown["SPNameQualifier"] == [php_peer.entity_id]
    assert shown["NameQualifier"] == [f"{idp.base_url}/saml/metadata"]
    assert auth_data["saml:sp:AuthnContext"] == f"{EID_LOA}3"
    assert auth_data["saml:sp:IdP"] == f"{idp.base_url}/saml/metadata"


def test_php_single_logout_round_trips(idp: IdpUnderTest, php_peer: SimpleSamlPhpPeer):
    with browser(idp.ca_file, idp.card("bertil")) as client:
        php_card_login(client, php_peer, idp)
        page = php_open(client, f"{php_peer.test_page_url()}&logout")
        # The IdP answers with a LogoutResponse, by redirect or by an auto-posting form.
        while saml_form(page) is not None:
            page = post_saml_form(client, page)
        assert str(page.url) == f"{php_peer.base_url}/simplesaml/logout.php", page.url
        assert page.status_code == 200, php_peer.log()[-3000:]
        # Both ends forgot the session: the test page sends the browser to the chooser again.
        chooser = php_open(client, php_peer.test_page_url())
        assert "Välj legitimeringsmetod" in chooser.text


def test_php_assertion_is_encrypted_and_decrypted(idp: IdpUnderTest, php_peer: SimpleSamlPhpPeer):
    """The SP's metadata has an encryption key (SimpleSAMLphp publishes its certificate for
    both uses): the Assertion travels encrypted and SimpleSAMLphp, which the guide's
    'assertion.encryption' makes insist on it, decrypts it."""
    with browser(idp.ca_file, idp.card("bertil")) as client:
        page, response_xml = php_card_login(client, php_peer, idp)
    assert "EncryptedAssertion" in response_xml
    assert "SE2120001355-E0002" not in response_xml
    assert shown_auth_data(page.text)["Attributes"][HSA_ID] == ["SE2120001355-E0002"]


def test_php_press_cancel_comes_back_as_error(idp: IdpUnderTest, php_peer: SimpleSamlPhpPeer):
    with browser(idp.ca_file, idp.card("anna")) as client:
        chooser = php_open(client, php_peer.test_page_url())
        idp_page = press_cancel(client, chooser)
        assert 'lang="sv"' in idp_page.text and 'lang="en"' in idp_page.text
        sp_page = back_to_service(client, idp_page, php_peer.acs_url)
    php_error(sp_page, "http://id.elegnamnden.se/status/1.0/cancel")


@pytest.mark.parametrize(
    ("card", "reason"), [("wrong_eku", "wrong_extended_key_usage"), ("doris", "unknown_person")]
)
def test_php_refused_card_comes_back_as_error(
    idp: IdpUnderTest, php_peer: SimpleSamlPhpPeer, card: str, reason: str
):
    with browser(idp.ca_file, idp.card(card)) as client:
        chooser = php_open(client, php_peer.test_page_url())
        idp_page = choose_this_device(client, chooser, idp.base_url)
        assert reason_code(idp_page.text) == reason, idp_page.text[:2000]
        sp_page = back_to_service(client, idp_page, php_peer.acs_url)
    php_error(sp_page, "AuthnFailed")


@pytest.mark.parametrize(
    ("requested", "comparison", "asserted"),
    [
        (f"{EID_LOA}3", "exact", f"{EID_LOA}3"),
        (f"{EID_LOA}2", "minimum", f"{EID_LOA}3"),
        (f"{EID_LOA}3", "maximum", f"{EID_LOA}3"),
        # The other ladder's loa3, asked by an eID SP, is answered in that ladder.
        (f"{SAMBI_LOA}3", "exact", f"{SAMBI_LOA}3"),
    ],
)
def test_php_loa_met(
    idp: IdpUnderTest, php_peer: SimpleSamlPhpPeer, requested: str, comparison: str, asserted: str
):
    url = php_peer.login_url(loa=requested, comparison=comparison)
    with browser(idp.ca_file, idp.card("anna")) as client:
        page, _ = php_card_login(client, php_peer, idp, url)
    assert shown_auth_data(page.text)["saml:sp:AuthnContext"] == asserted
    assert shown_auth_data(page.text)["Attributes"][HSA_ID] == ["SE2120001355-E0001"]


@pytest.mark.parametrize(
    ("requested", "comparison"),
    [(f"{EID_LOA}4", "exact"), (f"{EID_LOA}4", "minimum"), (f"{SAMBI_LOA}3", "better")],
)
def test_php_loa_not_met_comes_back_as_no_authn_context(
    idp: IdpUnderTest, php_peer: SimpleSamlPhpPeer, requested: str, comparison: str
):
    with browser(idp.ca_file, idp.card("anna")) as client:
        answer, request = php_open_seen(
            client, php_peer.login_url(loa=requested, comparison=comparison)
        )
        assert requested_authn_context(request) == (comparison, [requested]), request
        # Answered at once, before any card: an auto-posting form to the SP's ACS.
        sp_page = post_saml_form(client, answer, php_peer.acs_url)
    php_error(sp_page, "NoAuthnContext")


def test_php_transient_name_id_differs_per_login(idp: IdpUnderTest, php_peer: SimpleSamlPhpPeer):
    seen = []
    for _ in range(2):
        with browser(idp.ca_file, idp.card("anna")) as client:
            page, _ = php_card_login(client, php_peer, idp, php_peer.login_url(nameid=TRANSIENT))
        shown = shown_attributes(page.text)
        assert shown["Format"] == [TRANSIENT]
        seen.append(shown["NameId"][0])
    assert seen[0] != seen[1]


def test_php_persistent_name_id_is_stable_and_pairwise(
    idp: IdpUnderTest, php_peer: SimpleSamlPhpPeer
):
    seen = []
    for card in ("anna", "anna", "bertil"):
        with browser(idp.ca_file, idp.card(card)) as client:
            page, _ = php_card_login(client, php_peer, idp, php_peer.login_url(nameid=PERSISTENT))
        shown = shown_attributes(page.text)
        assert shown["Format"] == [PERSISTENT], page.text
        assert shown["SPNameQualifier"] == [php_peer.entity_id]
        seen.append(shown["NameId"][0])
    assert seen[0] == seen[1] != seen[2]
    assert "SE2120001355" not in seen[0]


def test_php_unsupported_name_id_format_comes_back_as_invalid_name_id_policy(
    idp: IdpUnderTest, php_peer: SimpleSamlPhpPeer
):
    email = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
    with browser(idp.ca_file, idp.card("anna")) as client:
        answer, request = php_open_seen(client, php_peer.login_url(nameid=email))
        assert f'Format="{email}"' in request, request
        sp_page = post_saml_form(client, answer, php_peer.acs_url)
    assert "Requester/InvalidNameIDPolicy" in sp_page.text, sp_page.text[:4000]


def test_php_metadata_converter_refuses_tampered_idp_metadata(
    idp: IdpUnderTest, php_peer: SimpleSamlPhpPeer
):
    """The peer trusts the IdP's metadata because metarefresh checked its signature: the same
    conversion of a tampered copy yields nothing."""
    genuine = idp.idp_metadata_file.read_text(encoding="utf-8")
    tampered = php_peer.directory / "tampered-idp-metadata.xml"
    tampered.write_text(genuine.replace("/saml/sso/post", "/saml/sso/evil"), encoding="utf-8")
    out = php_peer.directory / "tampered-out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="could not verify signature"):
        convert_idp_metadata(php_peer.directory / "config", tampered, idp.pki.idp_signing_cert, out)
    assert not any(out.iterdir())

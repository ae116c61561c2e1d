"""benchmarks/peers.py's parts, once, without timing anything: SimpleSAMLphp set up as the peer
IdP answers a card login through the benchmark's browser, and the benchmark counts a Response
only while it is the signed Success for that request and that card."""

from __future__ import annotations

import base64
import ssl
import sys
from pathlib import Path

from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import browser
import peers

from siths_testkit.pki import TestPki

DS = "{http://www.w3.org/2000/09/xmldsig#}"


def _edited(saml_response: str, edit) -> str:  # type: ignore[no-untyped-def]
    root = etree.fromstring(base64.b64decode(saml_response))
    edit(root)
    return base64.b64encode(etree.tostring(root)).decode()


def test_simplesamlphp_card_login_counts_only_intact_responses(
    tmp_path: Path, test_pki: TestPki
) -> None:
    side = peers.ssp_side(test_pki, tmp_path, php_children=1)
    try:
        card = test_pki.cards["anna"]
        context = ssl.create_default_context(cafile=str(test_pki.tls_ca_cert))
        context.load_cert_chain(card.cert, card.key)
        url, request_id = side.sp.login_url()
        with browser.Browser(context) as client:
            login = client.login(url)
        # One request, one handshake: the SSO URL answers with the page posting the Response.
        assert login.urls == [url]
        assert login.acs_url == side.sp.acs_url

        def check(saml_response: str, *, request: str = request_id, hsa_id: str = card.hsa_id):  # type: ignore[no-untyped-def]
            return peers.check_response(side, saml_response, request, login.acs_url, hsa_id)

        assert check(login.saml_response) == ""
        assert side.sp.parse(login.saml_response, request_id).ava[peers.harness.SAMBI_HSA_ID] == [
            card.hsa_id
        ]
        assert check(login.saml_response, request="id-other").startswith("InResponseTo")
        assert check(login.saml_response, hsa_id="SE2120001355-E0002").startswith("HSA-ID")

        def rename(root: etree._Element) -> None:
            for value in root.iter("{urn:oasis:names:tc:SAML:2.0:assertion}AttributeValue"):
                value.text = "SE2120001355-E0002" if value.text == card.hsa_id else value.text

        assert check(_edited(login.saml_response, rename)) == (
            "Assertion: signature does not verify"
        )

        def reissue(root: etree._Element) -> None:
            root.set("IssueInstant", "2000-01-01T00:00:00Z")

        assert check(_edited(login.saml_response, reissue)) == "Response: signature does not verify"

        def unsign_assertion(root: etree._Element) -> None:
            assertion = root.find("{urn:oasis:names:tc:SAML:2.0:assertion}Assertion")
            assertion.remove(assertion.find(f"{DS}Signature"))

        assert check(_edited(login.saml_response, unsign_assertion)).startswith(
            "Assertion: 0 signatures"
        )
    finally:
        side.stop()

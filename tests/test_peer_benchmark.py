"""benchmarks/peers.py's parts, once, without timing anything: SimpleSAMLphp set up as the peer
IdP answers a card login through the benchmark's browser, and the benchmark counts a Response
only while it is the signed Success for that request and that card."""

from __future__ import annotations

import argparse
import base64
import ssl
import sys
from pathlib import Path

import pytest
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


def _login_run(
    side: peers.Side, number: int, rate: float, p99_ms: float, cpu_ms: float
) -> peers.Run:
    """A login run of 10 s at ``rate`` logins/s, every latency ``p99_ms``, ``cpu_ms`` of server
    CPU per login (all the IdP's processes', or all php-fpm's)."""
    completed = int(rate * 10)
    cpu = cpu_ms / 1000 * completed
    latencies = peers.harness.Latencies([p99_ms / 1000] * completed, errors=[])
    program = "php-fpm" if side.key == "simplesamlphp" else "idp serve"
    return peers.Run(
        side, "login", 4, 10.0, latencies, completed, 0, {program: cpu}, 0.002, False, [], 0.02,
        round=number,
    )  # fmt: skip


def test_the_ratios_are_given_per_round_and_as_their_medians(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def side(key: str) -> peers.Side:
        return peers.Side(key, key, None, "", [], {}, {}, None, lambda: None)  # type: ignore[arg-type]

    ours, theirs = side("embedded"), side("simplesamlphp")
    runs = [
        _login_run(ours, 1, 90.0, 40.0, 6.3),
        _login_run(theirs, 1, 100.0, 40.0, 7.0),
        _login_run(theirs, 2, 100.0, 40.0, 7.0),
        _login_run(ours, 2, 110.0, 36.0, 7.7),
        _login_run(ours, 3, 100.0, 44.0, 7.0),
        _login_run(theirs, 3, 100.0, 40.0, 7.0),
    ]
    runs[0].latencies.errors.append("a refused Response")
    peers.report(runs, argparse.Namespace(seconds=10.0, warmup=1.0))
    table = capsys.readouterr().out
    assert "| embedded (round 2) | 4 | 110.0 |" in table
    # Per round, against the peer's run of the same round ...
    assert "| embedded | 4 | 1 | 0.90× | 1.00× | 0.90× | 0.90× |" in table
    assert "| embedded | 4 | 2 | 1.10× | 0.90× | 1.10× | 1.10× |" in table
    # ... and the median of each ratio, which need not be one round's row.
    assert "| embedded | 4 | median of 3 | **1.00×** | **1.00×** | **1.00×** | **1.00×** |" in table
    assert "embedded login C=4 failure: a refused Response" in table
    # Without SimpleSAMLphp's runs there are no ratios; the failure is reported all the same.
    peers.report(runs[3:5] + runs[:1], argparse.Namespace(seconds=10.0, warmup=1.0))
    alone = capsys.readouterr().out
    assert "÷" not in alone and "embedded login C=4 failure: a refused Response" in alone

"""Encrypted Assertions and the ACS rule in a running IdP, over real sockets.

A separate IdP process, started with ``IDP_REQUIRE_ENCRYPTION_PROFILES=["swedish-eid"]`` and
``IDP_ALLOW_HTTP_LOOPBACK_ACS=true``: an SP that publishes an encryption key gets its Assertion
only encrypted (pysaml2 decrypts it); a Swedish eID SP without a key is refused before anybody
logs in, and after, if its key disappears from the metadata mid-login; an http ACS is accepted
on loopback only. Every refusal ends on a page with its reason and in the audit log.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from siths_testkit.pki import TestPki
from tests.helpers.flows import choose_this_device, login_with_card, open_login, posted_form
from tests.helpers.idp_process import idp_env, import_people, start_idp
from tests.helpers.saml_sp import EID_ATTRIBUTES, make_service_provider
from tests.helpers.saml_sp import TestServiceProvider as ServiceProvider
from tests.helpers.support import (
    RunningServer,
    browser,
    reason_code,
    tls_context,
)

HSA_ID = "http://sambi.se/attributes/1/employeeHsaId"
EID_HSA_ID = "urn:oid:1.2.752.29.6.2.1"
ENCRYPTED_ASSERTION = b"<saml2:EncryptedAssertion"
ASSERTION = b"<saml2:Assertion"


@dataclass
class EncryptingIdp:
    base_url: str
    work: Path
    var_dir: Path
    metadata_dir: Path
    idp_metadata: Path
    server: RunningServer
    pki: TestPki

    def register(self, name: str, **options: object) -> ServiceProvider:
        sp = make_service_provider(
            self.work / name,
            entity_id=f"https://{name}.example.test/sp",
            idp_metadata_file=self.idp_metadata,
            **options,
        )
        (self.metadata_dir / f"{name}.xml").write_text(sp.metadata_xml, encoding="utf-8")
        return sp

    def card(self) -> tuple[Path, Path]:
        card = self.pki.cards["anna"]
        return card.cert, card.key

    def audit(self, event: str, reason: str) -> list[tuple[str, str, str]]:
        """(outcome, client_id, detail) of the audit events ``event`` with ``reason``."""
        with sqlite3.connect(self.var_dir / "idp.sqlite3") as connection:
            return connection.execute(
                "SELECT outcome, client_id, detail FROM audit_events "
                "WHERE event = ? AND reason = ? ORDER BY id",
                (event, reason),
            ).fetchall()


@pytest.fixture(scope="module")
def encrypting_idp(
    test_pki: TestPki, ocsp_responder: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EncryptingIdp]:
    work = tmp_path_factory.mktemp("encrypting-idp")
    env = idp_env(
        test_pki,
        work,
        IDP_REQUIRE_ENCRYPTION_PROFILES=json.dumps(["swedish-eid"]),
        IDP_ALLOW_HTTP_LOOPBACK_ACS="true",
    )
    metadata_dir, base_url = Path(env["IDP_SP_METADATA_DIR"]), env["IDP_BASE_URL"]
    import_people(env, work)
    server = start_idp(env, test_pki.tls_ca_cert, work / "idp.log")
    try:
        metadata = httpx.get(f"{base_url}/saml/metadata", verify=tls_context(test_pki.tls_ca_cert))
        idp_metadata = work / "idp-metadata.xml"
        idp_metadata.write_text(metadata.text, encoding="utf-8")
        yield EncryptingIdp(
            base_url, work, work / "var", metadata_dir, idp_metadata, server, test_pki
        )
    finally:
        server.stop()


def saml_response(page: httpx.Response) -> tuple[str, str, bytes]:
    assert page.status_code == 200, page.text
    action, fields = posted_form(page)
    return action, fields["SAMLResponse"], base64.b64decode(fields["SAMLResponse"])


def test_an_sp_with_an_encryption_key_gets_the_assertion_only_encrypted(
    encrypting_idp: EncryptingIdp,
) -> None:
    sp = encrypting_idp.register("sambi-enc", encryption=True)
    login_url, request_id = sp.login_url()
    with browser(encrypting_idp.pki.tls_ca_cert, encrypting_idp.card()) as client:
        page = login_with_card(client, login_url, encrypting_idp.base_url)
    action, encoded, xml = saml_response(page)
    assert action == sp.acs_url
    assert xml.count(ENCRYPTED_ASSERTION) == 1 and ASSERTION not in xml
    assert b"SE2120001355-E0001" not in xml and b"Andersson" not in xml
    parsed = sp.parse(encoded, request_id)
    assert parsed.ava[HSA_ID] == ["SE2120001355-E0001"]
    assert parsed.assertion.signature is not None


def test_a_swedish_eid_sp_with_a_key_logs_in_encrypted(encrypting_idp: EncryptingIdp) -> None:
    sp = encrypting_idp.register("eid-enc", encryption=True, attributes=EID_ATTRIBUTES)
    login_url, request_id = sp.login_url()
    with browser(encrypting_idp.pki.tls_ca_cert, encrypting_idp.card()) as client:
        page = login_with_card(client, login_url, encrypting_idp.base_url)
    _action, encoded, xml = saml_response(page)
    assert ENCRYPTED_ASSERTION in xml and ASSERTION not in xml
    assert sp.parse(encoded, request_id).ava[EID_HSA_ID] == ["SE2120001355-E0001"]


def test_a_swedish_eid_sp_without_a_key_is_refused_before_the_login(
    encrypting_idp: EncryptingIdp,
) -> None:
    sp = encrypting_idp.register("eid-plain", attributes=EID_ATTRIBUTES)
    login_url, _request_id = sp.login_url()
    with browser(encrypting_idp.pki.tls_ca_cert) as client:
        page = client.get(login_url)
    assert page.status_code == 400
    assert reason_code(page.text) == "encryption_required"
    assert "Felaktig inloggningsbegäran" in page.text and "Invalid login request" in page.text
    assert "SAMLResponse" not in page.text
    ((outcome, _client, detail),) = encrypting_idp.audit(
        "saml.authn_request", "encryption_required"
    )
    assert outcome == "rejected" and "publishes no encryption key" in detail


def test_a_key_gone_mid_login_ends_on_a_page_never_in_clear(
    encrypting_idp: EncryptingIdp,
) -> None:
    sp = encrypting_idp.register("eid-rollover", encryption=True, attributes=EID_ATTRIBUTES)
    login_url, _request_id = sp.login_url()
    with browser(encrypting_idp.pki.tls_ca_cert, encrypting_idp.card()) as client:
        chooser = open_login(client, login_url, encrypting_idp.base_url)
        assert chooser.status_code == 200, chooser.text
        # The SP's metadata now comes without its encryption key.
        without_key = make_service_provider(
            encrypting_idp.work / "eid-rollover-plain",
            entity_id=sp.entity_id,
            idp_metadata_file=encrypting_idp.idp_metadata,
            attributes=EID_ATTRIBUTES,
        )
        path = encrypting_idp.metadata_dir / "eid-rollover.xml"
        path.write_text(without_key.metadata_xml, encoding="utf-8")
        page = choose_this_device(client, chooser, encrypting_idp.base_url)
    assert page.status_code == 502
    assert reason_code(page.text) == "encryption_required"
    assert "Dina uppgifter kan inte skickas säkert" in page.text
    assert "Your details cannot be sent securely" in page.text
    assert "SAMLResponse" not in page.text
    ((outcome, client, detail),) = encrypting_idp.audit("saml.response", "encryption_required")
    assert (outcome, client) == ("failed", sp.entity_id)
    assert "publishes no encryption key" in detail


def test_http_acs_is_accepted_on_loopback_only(encrypting_idp: EncryptingIdp) -> None:
    loopback = encrypting_idp.register("loopback", acs_url="http://127.0.0.1:9/saml/acs")
    login_url, request_id = loopback.login_url()
    with browser(encrypting_idp.pki.tls_ca_cert, encrypting_idp.card()) as client:
        page = login_with_card(client, login_url, encrypting_idp.base_url)
    action, encoded, _xml = saml_response(page)
    assert action == "http://127.0.0.1:9/saml/acs"
    assert loopback.parse(encoded, request_id).ava[HSA_ID] == ["SE2120001355-E0001"]

    remote = encrypting_idp.register("plain-http", acs_url="http://plain-http.example.test/acs")
    login_url, _request_id = remote.login_url()
    with browser(encrypting_idp.pki.tls_ca_cert) as client:
        page = client.get(login_url)
    assert page.status_code == 400
    assert reason_code(page.text) == "insecure_acs"
    ((outcome, _client, detail),) = encrypting_idp.audit("saml.authn_request", "insecure_acs")
    assert outcome == "rejected"
    assert detail == "ACS 'http://plain-http.example.test/acs' is not an https URL"

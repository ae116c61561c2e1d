"""Mock Treserva against the real IdP: login with a test card, over real TLS sockets to the IdP.

Mock Treserva runs in-process (ASGI test client); it fetches the IdP's metadata over HTTPS from
the running IdP (trusting the test TLS CA, requiring the IdP's metadata signature) and the IdP
reads mock Treserva's metadata from its SP metadata directory, as in the demo.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from sp_demo import saml
from sp_demo.app import create_app
from sp_demo.config import Settings
from sp_demo.db import User, seed_demo_users
from tests.conftest import IdpUnderTest
from tests.helpers.flows import login_with_card, posted_form
from tests.helpers.support import browser

SP_BASE = "https://treserva-e2e.example.test"


@pytest.fixture(scope="module")
def treserva_settings(idp: IdpUnderTest, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    work = tmp_path_factory.mktemp("treserva")
    settings = Settings(
        base_url=SP_BASE,
        var_dir=work,
        sp_key=idp.pki.sp_signing_key,
        sp_cert=idp.pki.sp_signing_cert,
        idp_metadata_url=f"{idp.base_url}/saml/metadata",
        tls_ca_file=idp.pki.tls_ca_cert,
        idp_metadata_cert=idp.pki.idp_signing_cert,
        session_secret="e2e-secret-" + "y" * 32,
    )
    # What `sp-demo metadata --out metadata/sp/treserva.xml` does in the demo.
    metadata_file = idp.sp_metadata_dir / "treserva-e2e.xml"
    metadata_file.write_text(saml.build_sp_metadata_xml(settings), encoding="utf-8")
    return settings


@pytest.fixture
def treserva(treserva_settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    settings = treserva_settings.model_copy(
        update={"database_url": f"sqlite:///{tmp_path / 'treserva.sqlite3'}"}
    )
    app = create_app(settings)
    with app.state.database.session() as session:
        seed_demo_users(session)
    with TestClient(app, base_url=SP_BASE, follow_redirects=False) as client:
        yield client


def log_in_with_card(idp: IdpUnderTest, treserva: TestClient, card: str):
    started = treserva.get("/login")
    assert started.status_code == 303, started.text
    location = started.headers["location"]
    assert location.startswith(f"{idp.base_url}/saml/sso/redirect?")
    with browser(idp.ca_file, idp.card(card)) as client:
        final = login_with_card(client, location, idp.base_url)
    assert final.status_code == 200, final.text
    action, fields = posted_form(final)
    assert action == f"{SP_BASE}/saml/acs"
    # Mock Treserva's metadata publishes its certificate for encryption too: it gets the
    # Assertion only encrypted, and decrypts it.
    sent = base64.b64decode(fields["SAMLResponse"])
    assert b"<saml2:EncryptedAssertion" in sent and b"<saml2:Assertion" not in sent
    return treserva.post("/saml/acs", data=fields)


def test_anna_logs_in_with_her_card_and_sees_her_permissions(
    idp: IdpUnderTest, treserva: TestClient
) -> None:
    answered = log_in_with_card(idp, treserva, "anna")
    assert answered.status_code == 303, answered.text
    assert answered.headers["location"] == "/me"
    page = treserva.get("/me")
    assert page.status_code == 200
    assert '<dd id="name">Anna Andersson</dd>' in page.text
    assert '<code id="hsa-id">SE2120001355-E0001</code>' in page.text
    assert "<td>handläggare</td><td>Hemtjänst Centrum</td>" in page.text
    assert "<td>handläggare</td><td>Hemtjänst Majorna</td>" in page.text
    assert saml.SAMBI_LOA3 in page.text


def test_hsa_id_not_registered_in_treserva_gets_the_it_contact_page(
    idp: IdpUnderTest, treserva: TestClient
) -> None:
    # Bertil's account has not been moved over to SITHS login yet.
    with treserva.app.state.database.session() as session:
        session.execute(update(User).where(User.hsa_id == "SE2120001355-E0002").values(hsa_id=None))
    answered = log_in_with_card(idp, treserva, "bertil")
    assert answered.status_code == 303, answered.text
    page = treserva.get("/me")
    assert page.status_code == 403
    assert "IT-kontaktperson" in page.text
    assert "SE2120001355-E0002" in page.text

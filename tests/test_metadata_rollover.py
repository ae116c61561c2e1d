"""A signing key rollover over real sockets, on a separate IdP process (the session IdP keeps
its key): an SP that fetched metadata before the rollover keeps verifying responses throughout.

Timeline: the SP fetches metadata (current key only) → `idp keys rollover start` (metadata names
both keys; responses still signed with the current one) → the SP refreshes its metadata, as its
cacheDuration tells it to → `idp keys rollover finish` (responses signed with the next key, the
old key no longer published). Every login along the way verifies at the SP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from defusedxml import ElementTree
from saml2.mdstore import MetadataStore

from siths_testkit.pki import TestPki
from tests.helpers.flows import login_with_card, posted_form
from tests.helpers.idp_process import idp_env, import_people, start_idp
from tests.helpers.saml_sp import TestServiceProvider, make_service_provider
from tests.helpers.support import (
    VENV_BIN,
    RunningServer,
    browser,
    run_cli,
    tls_context,
)

MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"


@pytest.fixture(scope="module")
def rollover_idp(
    test_pki: TestPki, ocsp_responder: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str], Path]]:
    work = tmp_path_factory.mktemp("rollover-idp")
    env = idp_env(test_pki, work)
    base_url = env["IDP_BASE_URL"]
    import_people(env, work)
    server = start_idp(env, test_pki.tls_ca_cert, work / "idp.log")
    try:
        yield base_url, env, work
    finally:
        server.stop()


def _fetch_metadata(base_url: str, ca_file: Path, path: Path) -> list[str]:
    """Save the IdP's metadata to ``path``; return its signing certificates (base64)."""
    response = httpx.get(f"{base_url}/saml/metadata", verify=tls_context(ca_file))
    assert response.status_code == 200
    path.write_text(response.text, encoding="utf-8")
    root = ElementTree.fromstring(response.content)
    return [
        "".join((element.text or "").split())
        for element in root.iter(f"{MD}KeyDescriptor")
        if element.get("use") in (None, "signing")
        for element in element.iter(f"{DS}X509Certificate")
    ]


def _use_metadata(sp: TestServiceProvider, path: Path) -> None:
    """What an SP does when it refreshes the IdP's metadata: a new store from the new file."""
    config = sp.client.config
    store = MetadataStore(config.attribute_converters, config)
    store.load("local", str(path))
    sp.client.metadata = store
    sp.client.sec.metadata = store
    config.metadata = store


def _login(sp: TestServiceProvider, base_url: str, test_pki: TestPki) -> str:
    """Log Anna in through ``sp``; the SP parses (and so verifies) the Response."""
    card = test_pki.cards["anna"]
    login_url, request_id = sp.login_url()
    with browser(test_pki.tls_ca_cert, (card.cert, card.key)) as client:
        final = login_with_card(client, login_url, base_url)
    assert final.status_code == 200, final.text
    _action, fields = posted_form(final)
    parsed = sp.parse(fields["SAMLResponse"], request_id)
    assert parsed.ava["http://sambi.se/attributes/1/employeeHsaId"] == ["SE2120001355-E0001"]
    return fields["SAMLResponse"]


def _pem_body(path: Path) -> str:
    return "".join(
        line for line in path.read_text().splitlines() if line and not line.startswith("-----")
    )


def test_sp_keeps_verifying_through_a_rollover(
    rollover_idp: tuple[str, dict[str, str], Path], test_pki: TestPki
) -> None:
    base_url, env, work = rollover_idp
    current, following = (
        _pem_body(test_pki.idp_signing_cert),
        _pem_body(test_pki.idp_next_signing_cert),
    )
    before = work / "idp-metadata-before.xml"
    assert _fetch_metadata(base_url, test_pki.tls_ca_cert, before) == [current]
    sp = make_service_provider(
        work / "sp", entity_id="https://roll.example.test/metadata", idp_metadata_file=before
    )
    (work / "sp-metadata" / "roll.xml").write_text(sp.metadata_xml, encoding="utf-8")
    _login(sp, base_url, test_pki)

    started = run_cli([str(VENV_BIN / "idp"), "keys", "rollover", "start"], env)
    assert started.returncode == 0, started.stderr
    during = work / "idp-metadata-during.xml"
    assert _fetch_metadata(base_url, test_pki.tls_ca_cert, during) == [current, following]
    # The SP still holds the metadata from before the rollover: responses verify.
    _login(sp, base_url, test_pki)
    # Within its cache period the SP refreshes and learns the next key.
    _use_metadata(sp, during)
    _login(sp, base_url, test_pki)

    early = run_cli([str(VENV_BIN / "idp"), "keys", "rollover", "finish"], env)
    assert early.returncode != 0 and "may not know the next key yet" in early.stderr
    finished = run_cli([str(VENV_BIN / "idp"), "keys", "rollover", "finish", "--force"], env)
    assert finished.returncode == 0, finished.stderr
    after = work / "idp-metadata-after.xml"
    assert _fetch_metadata(base_url, test_pki.tls_ca_cert, after) == [following]
    # Signed with the next key now: the SP's metadata from during the rollover verifies it.
    _login(sp, base_url, test_pki)
    _use_metadata(sp, after)
    _login(sp, base_url, test_pki)
    # And it really is the next key: metadata naming only the old key no longer verifies.
    _use_metadata(sp, before)
    with pytest.raises(Exception, match=r"[Ss]ignature"):
        _login(sp, base_url, test_pki)
    # The published metadata itself is signed with the key that signs now.
    validated = run_cli(
        [
            str(VENV_BIN / "idp"),
            "metadata",
            "validate",
            str(after),
            "--federation-cert",
            str(test_pki.idp_next_signing_cert),
        ],
        {},
    )
    assert validated.returncode == 0, validated.stdout

"""Session fixtures: one test PKI, one directory, one running IdP for the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import httpx
import pytest

from idp.command_plugins import ENTRY_POINT_GROUP
from siths_testkit.pki import TestPki, init_test_pki
from tests.helpers.idp_process import (
    idp_env,
    import_people,
    start_idp,
)
from tests.helpers.saml_sp import EID_ATTRIBUTES, TestServiceProvider, make_service_provider
from tests.helpers.support import (
    VENV_BIN,
    RunningServer,
    free_port,
    run_cli,
    start_server,
    tls_context,
)

# Fixtures shared by several modules: the mock Treserva (``treserva``) and the browser
# (``chromium``).
pytest_plugins = ["tests.helpers.treserva", "tests.helpers.chromium"]


@dataclass
class IdpUnderTest:
    server: RunningServer
    base_url: str
    cert_login_url: str
    pki: TestPki
    env: dict[str, str]
    var_dir: Path
    sp_metadata_dir: Path
    idp_metadata_file: Path
    sp: TestServiceProvider
    eid_sp: TestServiceProvider
    unsigned_sp: TestServiceProvider
    work_dir: Path

    @property
    def ca_file(self) -> Path:
        return self.pki.tls_ca_cert

    def card(self, name: str) -> tuple[Path, Path]:
        card = self.pki.cards[name]
        return card.cert, card.key

    def idp_cli(self, *args: str):
        return run_cli([str(VENV_BIN / "idp"), *args], self.env)

    def database_file(self) -> Path:
        return self.var_dir / "idp.sqlite3"


# nextUpdate of the session's OCSP responder, so also how long the IdP caches a good answer:
# short, so a revoked card is refused within seconds (tests/test_revocation.py waits for it).
OCSP_NEXT_UPDATE_SECONDS = 3


@pytest.fixture(scope="session")
def revocation_url() -> str:
    """Where the session's OCSP responder serves; cards point here, so chosen before the PKI."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory, revocation_url: str) -> TestPki:
    return init_test_pki(tmp_path_factory.mktemp("pki"), revocation_url=revocation_url)


@pytest.fixture(scope="session")
def ocsp_responder(
    test_pki: TestPki, revocation_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The real `idp pki ocsp-responder` process for the whole session (the IdP fails closed)."""
    server = start_server(
        [
            str(VENV_BIN / "idp"),
            "pki",
            "ocsp-responder",
            "--dir",
            str(test_pki.directory),
            "--next-update-seconds",
            str(OCSP_NEXT_UPDATE_SECONDS),
            "--log-level",
            "warning",
        ],
        {},
        f"{revocation_url}/health",
        test_pki.tls_ca_cert,
        tmp_path_factory.mktemp("ocsp") / "ocsp-responder.log",
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def idp(
    test_pki: TestPki, ocsp_responder: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IdpUnderTest]:
    work = tmp_path_factory.mktemp("idp")
    env = idp_env(test_pki, work)
    var_dir, sp_metadata_dir = Path(env["IDP_VAR_DIR"]), Path(env["IDP_SP_METADATA_DIR"])
    base_url, cert_login_url = env["IDP_BASE_URL"], env["IDP_CERT_LOGIN_URL"]
    import_people(env, work)
    result = run_cli([str(VENV_BIN / "idp"), "people", "deactivate", "SE2120001355-E0003"], env)
    assert result.returncode == 0, result.stderr
    server = start_idp(env, test_pki.tls_ca_cert, work / "idp.log")
    try:
        idp_metadata_file = work / "idp-metadata.xml"
        metadata = httpx.get(f"{base_url}/saml/metadata", verify=tls_context(test_pki.tls_ca_cert))
        idp_metadata_file.write_text(metadata.text, encoding="utf-8")
        sp = make_service_provider(
            work / "sp",
            entity_id="https://sp.example.test/metadata",
            idp_metadata_file=idp_metadata_file,
        )
        eid_sp = make_service_provider(
            work / "eid-sp",
            entity_id="https://eid-sp.example.test/metadata",
            idp_metadata_file=idp_metadata_file,
            attributes=EID_ATTRIBUTES,
        )
        unsigned_sp = make_service_provider(
            work / "unsigned-sp",
            entity_id="https://unsigned-sp.example.test/metadata",
            idp_metadata_file=idp_metadata_file,
            sign_requests=False,
        )
        for name, provider in (("sp", sp), ("eid-sp", eid_sp), ("unsigned-sp", unsigned_sp)):
            (sp_metadata_dir / f"{name}.xml").write_text(provider.metadata_xml, encoding="utf-8")
        yield IdpUnderTest(
            server=server,
            base_url=base_url,
            cert_login_url=cert_login_url,
            pki=test_pki,
            env=env,
            var_dir=var_dir,
            sp_metadata_dir=sp_metadata_dir,
            idp_metadata_file=idp_metadata_file,
            sp=sp,
            eid_sp=eid_sp,
            unsigned_sp=unsigned_sp,
            work_dir=work,
        )
    finally:
        server.stop()


# Fixtures that start nothing and touch only memory or a temporary directory. A test that needs
# no other fixture (directly or through another) is a unit test: `pytest -m unit` runs those in
# seconds; every other test is marked `integration` (real servers, PKI, databases, browsers).
_CHEAP_FIXTURES = frozenset(
    {
        "request",
        "tmp_path",
        "tmp_path_factory",
        "monkeypatch",
        "capsys",
        "capfd",
        "caplog",
        "recwarn",
        "pytestconfig",
        "record_property",
    }
)


def pytest_sessionstart(session: pytest.Session) -> None:
    # `idp pki|card|app` come from the installed distribution's entry points: a venv installed
    # from an older pyproject.toml lacks them, and every test that runs those commands would
    # fail on its own. One clear stop instead.
    if not entry_points(group=ENTRY_POINT_GROUP, name="pki"):
        pytest.exit(
            "the venv's atkomsttjansten has no `idp pki` entry point (installed from an older "
            "pyproject.toml): reinstall with `make venv` or `.venv/bin/pip install -e '.[test]'`",
            returncode=4,
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("integration") is not None:
            continue  # says so itself: it starts a process of its own
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        if callspec is not None:
            names -= set(callspec.params)
        cheap = names <= _CHEAP_FIXTURES
        item.add_marker(pytest.mark.unit if cheap else pytest.mark.integration)

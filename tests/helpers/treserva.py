"""Running mock Treserva (``sp-demo serve``) against the session's IdP, over real sockets.

Helpers for the suites that log in at Treserva, and the ``treserva`` fixture (this module is a
pytest plugin, loaded by tests/conftest.py). Mock Treserva runs as its own process with its own
database; its SAML metadata is dropped into the IdP's SP metadata directory (which the IdP
re-reads on change), as ``sp-demo metadata --out`` does in the demo.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sp_demo.config import Settings
from sp_demo.cutover import today as swedish_today
from sp_demo.saml import build_sp_metadata_xml
from tests.conftest import IdpUnderTest
from tests.helpers.flows import follow, login_with_card, posted_form
from tests.helpers.support import (
    VENV_BIN,
    RunningServer,
    free_port,
    parse_page,
    run_cli,
    start_server,
)

SESSION_SECRET = "treserva-test-secret-" + "z" * 32
WINDOWS_PASSWORD = "windows"
ANNA = "SE2120001355-E0001"
BERTIL = "SE2120001355-E0002"
PERMISSION_ROW = re.compile(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>")
# Past the cut-over: mock Treserva accepts SITHS logins only.
CUTOVER_PASSED = dt.date(2024, 3, 1)


@dataclass
class Treserva:
    """One configuration of mock Treserva; ``start`` runs it (several times, if the test moves
    time forward by restarting it with another cut-over date)."""

    idp: IdpUnderTest
    work: Path
    port: int
    database: Path
    idp_directory_file: Path | None = None
    # The process while ``running`` runs it.
    server: RunningServer | None = None

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.port}"

    def env(self, cutover_date: dt.date | None = None) -> dict[str, str]:
        pki = self.idp.pki
        env = {
            "SP_DEMO_BASE_URL": self.base_url,
            "SP_DEMO_PORT": str(self.port),
            "SP_DEMO_VAR_DIR": str(self.work),
            "SP_DEMO_DATABASE_URL": f"sqlite:///{self.database}",
            "SP_DEMO_SP_KEY": str(pki.sp_signing_key),
            "SP_DEMO_SP_CERT": str(pki.sp_signing_cert),
            "SP_DEMO_TLS_CERT": str(pki.tls_server_cert),
            "SP_DEMO_TLS_KEY": str(pki.tls_server_key),
            "SP_DEMO_TLS_CA_FILE": str(pki.tls_ca_cert),
            "SP_DEMO_IDP_METADATA_URL": f"{self.idp.base_url}/saml/metadata",
            "SP_DEMO_IDP_METADATA_CERT": str(pki.idp_signing_cert),
            "SP_DEMO_SESSION_SECRET": SESSION_SECRET,
            "SP_DEMO_WINDOWS_PASSWORD": WINDOWS_PASSWORD,
        }
        if cutover_date is not None:
            env["SP_DEMO_CUTOVER_DATE"] = cutover_date.isoformat()
        if self.idp_directory_file is not None:
            env["SP_DEMO_IDP_DIRECTORY_FILE"] = str(self.idp_directory_file)
        return env

    def cli(self, *args: str) -> str:
        """Run ``sp-demo`` on this Treserva's database; its standard output."""
        result = run_cli([str(VENV_BIN / "sp-demo"), *args], self.env())
        assert result.returncode == 0, result.stderr
        return result.stdout

    @contextmanager
    def running(self, cutover_date: dt.date) -> Iterator[RunningServer]:
        server = start_server(
            [str(VENV_BIN / "sp-demo"), "serve", "--log-level", "warning"],
            self.env(cutover_date),
            f"{self.base_url}/",
            self.idp.ca_file,
            self.work / f"sp-demo-{cutover_date.isoformat()}.log",
        )
        self.server = server
        try:
            yield server
        finally:
            self.server = None
            server.stop()


def make_treserva(idp: IdpUnderTest, work: Path, name: str) -> Treserva:
    """A mock Treserva with a seeded register and its metadata known to the IdP."""
    work.mkdir(parents=True, exist_ok=True)
    treserva = Treserva(idp, work, free_port(), work / "treserva.sqlite3")
    settings = Settings(**_settings_fields(treserva))
    metadata = build_sp_metadata_xml(settings)
    # Write then rename: the IdP re-reads the directory and must never see half a file.
    temporary = idp.sp_metadata_dir / f".{name}.xml.tmp"
    temporary.write_text(metadata, encoding="utf-8")
    temporary.replace(idp.sp_metadata_dir / f"{name}.xml")
    treserva.cli("users", "seed")
    return treserva


@pytest.fixture(scope="module")
def treserva(
    request: pytest.FixtureRequest, idp: IdpUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Treserva]:
    """One mock Treserva per test module, running past the cut-over (SITHS logins only), known
    to the session's IdP; ``treserva.server`` is its process. A module that defines its own
    ``treserva`` fixture (e.g. an in-process app) overrides this one."""
    name = "treserva-" + request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    made = make_treserva(idp, tmp_path_factory.mktemp(name), name)
    with made.running(CUTOVER_PASSED):
        yield made


def _settings_fields(treserva: Treserva) -> dict[str, object]:
    pki = treserva.idp.pki
    return {
        "base_url": treserva.base_url,
        "var_dir": treserva.work,
        "sp_key": pki.sp_signing_key,
        "sp_cert": pki.sp_signing_cert,
    }


def today() -> dt.date:
    return swedish_today()


def log_in_with_card(
    client: httpx.Client, treserva: Treserva, path: str = "/login"
) -> httpx.Response:
    """Log in at Treserva through the IdP with the card ``client`` presents; the page after."""
    started = client.get(f"{treserva.base_url}{path}")
    assert started.status_code == 303, started.text
    if started.headers["location"].startswith("/"):
        # A page that needs a login first (e.g. /admin → /login?next=/admin): one hop only,
        # the next one leaves for the IdP.
        started = client.get(f"{treserva.base_url}{started.headers['location']}")
        assert started.status_code == 303, started.text
    location = started.headers["location"]
    idp = treserva.idp
    assert location.startswith(f"{idp.base_url}/saml/sso/redirect?"), location
    final = login_with_card(client, location, idp.base_url)
    assert final.status_code == 200, final.text
    action, fields = posted_form(final)
    assert action == f"{treserva.base_url}/saml/acs"
    return follow(client, client.post(action, data=fields), treserva.base_url)


def windows_log_in(client: httpx.Client, treserva: Treserva, account: str) -> httpx.Response:
    """Log in with the Windows login stand-in; the page after (or the refusal)."""
    form_page = client.get(f"{treserva.base_url}/windows-login")
    if form_page.status_code != 200:
        return form_page
    fields = parse_page(form_page.text).forms[0]["fields"]
    answered = client.post(
        f"{treserva.base_url}/windows-login",
        data={"csrf": fields["csrf"], "windows_account": account, "password": WINDOWS_PASSWORD},
    )
    return follow(client, answered, treserva.base_url)


def permissions_shown(html: str) -> list[tuple[str, str]]:
    """The (role, unit) rows of the permissions table on ``/me``."""
    return PERMISSION_ROW.findall(html)


def csrf_of(html: str) -> str:
    for form in parse_page(html).forms:
        if "csrf" in form["fields"]:
            return form["fields"]["csrf"]
    raise AssertionError("no form with a csrf field")

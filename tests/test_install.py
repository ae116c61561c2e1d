"""The package as an operator installs it: ``pip install`` (not editable) into a fresh venv
outside the repository, then ``idp pki init``, ``idp people import`` and ``idp serve`` from another
directory, and one card login over real sockets.

The source handed to pip is a copy of what the image copies too (pyproject.toml, README.md and
the four packages), so nothing in the checkout (``build/``, ``var/``, ``metadata/``) can stand in
for package data the wheel lacks, and the checkout is left without build leftovers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from siths_testkit.pki import load_test_pki
from tests.helpers.flows import login_with_card, posted_form
from tests.helpers.saml_sp import sp_of_running_idp
from tests.helpers.support import REPO_ROOT, browser, free_port, start_server

PACKAGED = ("pyproject.toml", "README.md", "idp", "sp_demo", "portal", "siths_testkit")
PEOPLE_CSV = """hsa_id,given_name,surname,title,organisation,mail,person_key
SE2120001355-E0001,Anna,Andersson,Handläggare,Göteborgs Stad,anna.andersson@example.invalid,
"""


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def _installed_venv(work: Path) -> Path:
    """A fresh venv with the package installed from a copy of its sources; its bin directory."""
    source = work / "source"
    source.mkdir()
    for name in PACKAGED:
        origin = REPO_ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, source / name)
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], work)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)], work)
    return venv / "bin"


@pytest.mark.integration
def test_installed_package_serves_a_card_login_from_any_directory(tmp_path: Path) -> None:
    assert not tmp_path.is_relative_to(REPO_ROOT)
    bin_dir = _installed_venv(tmp_path)
    site = tmp_path / "venv" / "lib"
    imported = _run([str(bin_dir / "python"), "-c", "import idp; print(idp.__file__)"], tmp_path)
    assert Path(imported.strip()).is_relative_to(site), imported

    # The operator's directory: the IdP's state goes here (var/, metadata/sp), relative to it.
    home = tmp_path / "operator"
    home.mkdir()
    revocation_url = f"http://127.0.0.1:{free_port()}"
    _run([str(bin_dir / "idp"), "pki", "init", "--revocation-url", revocation_url], home)
    pki = load_test_pki(home / "var" / "pki")
    (home / "people.csv").write_text(PEOPLE_CSV, encoding="utf-8")
    _run([str(bin_dir / "idp"), "people", "import", "people.csv"], home)
    sp_metadata_dir = home / "metadata" / "sp"
    sp_metadata_dir.mkdir(parents=True)

    port, cert_port = free_port(), free_port()
    base_url = f"https://localhost:{port}"
    env = {
        "IDP_PORT": str(port),
        "IDP_CERT_PORT": str(cert_port),
        "IDP_BASE_URL": base_url,
        "IDP_CERT_LOGIN_URL": f"https://localhost:{cert_port}",
    }
    ocsp = server = None
    try:
        ocsp = start_server(
            [str(bin_dir / "idp"), "pki", "ocsp-responder", "--log-level", "warning"],
            {},
            f"{revocation_url}/health",
            pki.tls_ca_cert,
            tmp_path / "ocsp.log",
            cwd=home,
        )
        server = start_server(
            [str(bin_dir / "idp"), "serve", "--log-level", "warning"],
            env,
            f"{base_url}/saml/metadata",
            pki.tls_ca_cert,
            tmp_path / "idp.log",
            cwd=home,
        )
        sp = sp_of_running_idp(tmp_path, base_url, pki.tls_ca_cert, sp_metadata_dir)
        login_url, request_id = sp.login_url()
        card = (pki.cards["anna"].cert, pki.cards["anna"].key)
        with browser(pki.tls_ca_cert, card) as client:
            final = login_with_card(client, login_url, base_url)
        _action, fields = posted_form(final)
        # The SP wants the Response and the Assertion signed (tests/helpers/saml_sp.py):
        # pysaml2 refuses an unsigned or wrongly signed one, so parsing is the signature check.
        parsed = sp.parse(fields["SAMLResponse"], request_id)
        assert parsed.status_ok()
        assert parsed.ava["http://sambi.se/attributes/1/employeeHsaId"] == ["SE2120001355-E0001"]
        # State went to the operator's directory, none into the installed package.
        assert (home / "var" / "idp.sqlite3").is_file()
        assert not list((tmp_path / "venv").rglob("*.sqlite3"))
    finally:
        for running in (server, ocsp):
            if running is not None:
                running.stop()

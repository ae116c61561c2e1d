"""An IdP process of a test's own (``idp serve`` on loopback), configured as the session's is.

The session IdP (tests/conftest.py) and the modules that need an IdP with other settings (a
federation aggregate, key rollover, required encryption, several workers) build it from here.
"""

from __future__ import annotations

import json
from pathlib import Path

from siths_testkit.pki import TestPki
from tests.helpers.support import VENV_BIN, RunningServer, free_port, run_cli, start_server

PRIVATE_PROVIDER = "5567000010"
GOTEBORG = "2120001355"

DIRECTORY_CSV = """hsa_id,given_name,surname,title,organisation,mail,person_key
SE2120001355-E0001,Anna,Andersson,Handläggare,Göteborgs Stad,anna.andersson@example.invalid,
SE2120001355-E0002,Bertil,Berg,Undersköterska,Göteborgs Stad,,
SE2120001355-E0003,Cecilia,Carlsson,Enhetschef,Göteborgs Stad,,
SE2120001355-E0005,Erik,Ek,Enhetschef,Göteborgs Stad,erik.ek@example.invalid,
SE5567000010-P0001,Erik,Ek,Sjuksköterska,Omsorgsbolaget Väst AB,,SE2120001355-E0005
SE2120001355-E0901,Eva,Utgången,,Göteborgs Stad,,
SE5590000001-X0001,Olle,Annan,,Annan Region AB,,
"""


def idp_env(pki: TestPki, work: Path, **extra: str) -> dict[str, str]:
    """Settings for an IdP in ``work``: two free loopback ports (its address is
    ``IDP_BASE_URL``, the card port's ``IDP_CERT_LOGIN_URL``), state in ``work/var``, SP
    metadata in ``work/sp-metadata`` (made here, empty), ``pki``'s keys, Göteborg and the
    private provider accepted; then ``extra`` (``IDP_…`` names) added or overriding."""
    sp_metadata_dir = work / "sp-metadata"
    sp_metadata_dir.mkdir(parents=True)
    port, cert_port = free_port(), free_port()
    return {
        "IDP_VAR_DIR": str(work / "var"),
        "IDP_PKI_DIR": str(pki.directory),
        "IDP_SP_METADATA_DIR": str(sp_metadata_dir),
        "IDP_PORT": str(port),
        "IDP_CERT_PORT": str(cert_port),
        "IDP_BASE_URL": f"https://localhost:{port}",
        "IDP_CERT_LOGIN_URL": f"https://localhost:{cert_port}",
        "IDP_ACCEPTED_ORGANISATIONS": json.dumps([GOTEBORG, PRIVATE_PROVIDER]),
        **extra,
    }


def import_people(env: dict[str, str], work: Path) -> None:
    """``idp people import`` of :data:`DIRECTORY_CSV` (written to ``work/people.csv``)."""
    csv_file = work / "people.csv"
    csv_file.write_text(DIRECTORY_CSV, encoding="utf-8")
    imported = run_cli([str(VENV_BIN / "idp"), "people", "import", str(csv_file)], env)
    assert imported.returncode == 0, imported.stderr


def start_idp(env: dict[str, str], ca_file: Path, log_file: Path) -> RunningServer:
    """``idp serve`` with ``env``, once its metadata answers over TLS trusted by ``ca_file``."""
    return start_server(
        [str(VENV_BIN / "idp"), "serve", "--log-level", "warning"],
        env,
        f"{env['IDP_BASE_URL']}/saml/metadata",
        ca_file,
        log_file,
    )

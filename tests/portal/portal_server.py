"""The portal as a real server (``portal serve``, uvicorn over TLS) for the tests, with the
session IdP's PKI, an SMTP sink, and the IdP's command line for its directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from portal.config import Settings
from portal.db import Database
from tests.conftest import IdpUnderTest
from tests.helpers.support import VENV_BIN, RunningServer, free_port, start_server
from tests.portal.smtp_sink import SmtpSink


@dataclass
class PortalUnderTest:
    server: RunningServer
    base_url: str
    settings: Settings
    database: Database
    sink: SmtpSink


@contextmanager
def running_portal(
    idp: IdpUnderTest,
    work: Path,
    extra_env: dict[str, str] | None = None,
    port: int = 0,
    series: str = "U",
) -> Iterator[PortalUnderTest]:
    """The portal on ``port`` (a free one if 0) with ``extra_env`` added to its settings.

    The portals of the tests share the session's IdP directory, so each allocates HSA-IDs in
    its own ``series``, as two allocators of one organisation's HSA-IDs must."""
    sink = SmtpSink().start()
    port = port or free_port()
    base_url = f"https://localhost:{port}"
    env = {
        "PORTAL_BASE_URL": base_url,
        "PORTAL_PORT": str(port),
        "PORTAL_VAR_DIR": str(work),
        "PORTAL_PKI_DIR": str(idp.pki.directory),
        "PORTAL_SESSION_SECRET": "portal-server-" + "q" * 32,
        "PORTAL_SMTP_PORT": str(sink.port),
        "PORTAL_IDP_COMMAND": str(VENV_BIN / "idp"),
        "PORTAL_IDP_ENVIRONMENT": json.dumps(idp.env),
        "PORTAL_HSA_ID_SERIES": series,
        **(extra_env or {}),
    }
    # The test's own view of the same settings and database (steps 1-5 are driven directly).
    settings = Settings(
        base_url=base_url,
        var_dir=work,
        pki_dir=idp.pki.directory,
        session_secret="x" * 40,
        smtp_port=sink.port,
        hsa_id_series=series,
    )
    database = Database(settings.database_url)
    server = start_server(
        [str(VENV_BIN / "portal"), "serve", "--log-level", "warning"],
        env,
        f"{base_url}/",
        idp.ca_file,
        work / "portal.log",
    )
    try:
        yield PortalUnderTest(server, base_url, settings, database, sink)
    finally:
        server.stop()
        database.dispose()
        sink.stop()

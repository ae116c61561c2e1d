"""The scaled deployment on loopback, for the multi-node and fault tests: a throwaway
PostgreSQL, two ``idp serve --behind-proxy`` nodes and nginx running the shipped template
(``siths_testkit.local_cluster``). The browser talks only to nginx; which node served a step is read
from the nodes' JSON logs by the request id nginx put on it."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from siths_testkit.local_cluster import NginxProcess, PostgresCluster, start_nginx, start_postgres
from siths_testkit.login_driver import LoginResult
from siths_testkit.pki import TestPki
from tests.helpers import saml_sp
from tests.helpers.idp_process import DIRECTORY_CSV, GOTEBORG, PRIVATE_PROVIDER
from tests.helpers.support import (
    VENV_BIN,
    RunningServer,
    free_port,
    run_cli,
    start_server,
    tls_context,
)


@dataclass
class Node:
    name: str
    port: int
    server: RunningServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    postgres: PostgresCluster
    nginx: NginxProcess
    nodes: dict[str, Node]
    base_url: str
    cert_login_url: str
    pki: TestPki
    env: dict[str, str]
    sp: saml_sp.TestServiceProvider
    _log_offsets: dict[str, int] = field(default_factory=dict)

    @property
    def ca_file(self) -> Path:
        return self.pki.tls_ca_cert

    def browser(
        self, card: str | None = None, cookies: httpx.Cookies | None = None
    ) -> httpx.Client:
        """A browser stand-in (its own cookie jar, or ``cookies``) presenting ``card``."""
        files = (self.pki.cards[card].cert, self.pki.cards[card].key) if card else (None, None)
        return httpx.Client(
            verify=tls_context(self.ca_file, *files),
            follow_redirects=False,
            timeout=30,
            cookies=cookies,
        )

    def served_by(self, request_id: str, wait_seconds: float = 5.0) -> str | None:
        """The node whose access log has ``request_id`` (nginx's $request_id).

        A node writes its access line after the answer has gone out, so the client can ask
        before the line is there: look again for up to ``wait_seconds``.
        """
        needle = f'"request_id": "{request_id}"'
        deadline = time.monotonic() + wait_seconds
        while True:
            for name, node in self.nodes.items():
                if needle in node.server.log():
                    return name
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def query(self, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.postgres.url.replace("+psycopg", "")) as connection:
            return connection.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def verify(self, result: LoginResult, request_id: str) -> dict[str, list[str]]:
        """What the SP accepts of a Response (signature, audience, InResponseTo…)."""
        assert result.acs_url == self.sp.acs_url
        return self.sp.parse(result.saml_response, request_id).ava


def _node_env(common: dict[str, str], name: str, port: int, work: Path) -> dict[str, str]:
    return {
        **common,
        "IDP_NODE_NAME": name,
        "IDP_PORT": str(port),
        "IDP_VAR_DIR": str(work / f"var-{name}"),
    }


def start_node(
    common: dict[str, str], name: str, work: Path, ca_file: Path, port: int | None = None
) -> Node:
    """Start node ``name`` and wait until it answers. Given its ``port``, it is a restart (same
    var/, same place in nginx's upstream) and logs to a new file."""
    restart = port is not None
    port = port or free_port()
    log_name = f"node-{name}-{time.monotonic_ns()}.log" if restart else f"node-{name}.log"
    server = start_server(
        [str(VENV_BIN / "idp"), "serve", "--behind-proxy", "--log-level", "info"],
        _node_env(common, name, port, work),
        f"http://127.0.0.1:{port}/healthz",
        ca_file,  # unused: the node speaks plain HTTP
        work / log_name,
    )
    return Node(name, port, server)


@contextmanager
def running_cluster(
    test_pki: TestPki, work: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """PostgreSQL (migrated twice at once, the directory imported), nodes a and b, nginx and
    an SP registered with them; everything is stopped on exit. ``extra_env`` goes to every
    node."""
    postgres = start_postgres(free_port())
    nodes: dict[str, Node] = {}
    nginx: NginxProcess | None = None
    try:
        https_port, cert_port = free_port(), free_port()
        base_url = f"https://localhost:{https_port}"
        cert_login_url = f"https://localhost:{cert_port}"
        sp_metadata_dir = work / "sp-metadata"
        sp_metadata_dir.mkdir(parents=True)
        common = {
            "IDP_DATABASE_URL": postgres.url,
            "IDP_BEHIND_PROXY": "true",
            "IDP_HOST": "127.0.0.1",
            "IDP_BASE_URL": base_url,
            "IDP_CERT_LOGIN_URL": cert_login_url,
            "IDP_TRUSTED_PROXIES": json.dumps(["127.0.0.1/32"]),
            "IDP_PKI_DIR": str(test_pki.directory),
            "IDP_SP_METADATA_DIR": str(sp_metadata_dir),
            # What every node must share besides the database: pseudonym key, OIDC keys.
            "IDP_PAIRWISE_SECRET": secrets.token_hex(32),
            "IDP_OIDC_KEYS_DIR": str(work / "oidc-keys"),
            "IDP_ACCEPTED_ORGANISATIONS": json.dumps([GOTEBORG, PRIVATE_PROVIDER]),
            "IDP_SWEEP_INTERVAL_SECONDS": "5",
            **(extra_env or {}),
        }
        # A deployment's migration step, twice at once: the advisory lock lets one migrate.
        upgrade = [str(VENV_BIN / "idp"), "db", "upgrade"]
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: run_cli(upgrade, common), range(2)))
        for result in results:
            assert result.returncode == 0, result.stderr
        csv_file = work / "people.csv"
        csv_file.write_text(DIRECTORY_CSV, encoding="utf-8")
        imported = run_cli([str(VENV_BIN / "idp"), "people", "import", str(csv_file)], common)
        assert imported.returncode == 0, imported.stderr
        # One after the other: the first node generates the shared OIDC keys.
        for name in ("a", "b"):
            nodes[name] = start_node(common, name, work, test_pki.tls_ca_cert)
        nginx = start_nginx(
            {
                "IDP_NODE_A": f"127.0.0.1:{nodes['a'].port}",
                "IDP_NODE_B": f"127.0.0.1:{nodes['b'].port}",
                "IDP_LISTEN": "127.0.0.1",
                "IDP_HTTPS_PORT": str(https_port),
                "IDP_CERT_PORT": str(cert_port),
                "IDP_SERVER_NAME": "localhost",
                "IDP_TLS_CERT": str(test_pki.tls_server_cert),
                "IDP_TLS_KEY": str(test_pki.tls_server_key),
            },
            wait_for_port=https_port,
        )
        sp = saml_sp.sp_of_running_idp(work, base_url, test_pki.tls_ca_cert, sp_metadata_dir)
        yield Cluster(postgres, nginx, nodes, base_url, cert_login_url, test_pki, common, sp)
    finally:
        if nginx is not None:
            nginx.stop()
        for node in nodes.values():
            node.server.stop()
        postgres.stop()

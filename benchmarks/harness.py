"""Deployments and load loops shared by the login benchmarks (logins.py, orders.py, cluster.py).

Everything runs on loopback, in a temporary directory, with a throwaway test PKI and the real
``idp pki ocsp-responder``:

- :func:`embedded`: one ``idp serve`` node (HTTPS + certificate listener, SQLite), one process
  or ``workers`` worker processes under a supervisor (``idp serve --workers N``);
- :func:`scaled`: nginx (``docker/nginx/idp.conf.template``) in front of two
  ``idp serve --behind-proxy`` nodes on a PostgreSQL cluster (``durable=True``: fsync on).

The SP is the tests' independent pysaml2 SP (``tests/helpers/saml_sp.py``). Login URLs are
made before a timed run; in a loop a Response is checked cheaply (InResponseTo, status, HSA-ID
read from the XML), and a sample is verified afterwards by the SP in full (signatures and all).

The load generator shares the machine with the servers: every report says how much CPU each
side used, read from /proc.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import secrets
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # tests.helpers.saml_sp: the independent pysaml2 SP

warnings.filterwarnings("ignore", message="CFB has been moved")

import httpx  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from defusedxml import ElementTree  # noqa: E402

from siths_testkit.local_cluster import (  # noqa: E402
    NginxProcess,
    PostgresCluster,
    start_nginx,
    start_postgres,
)
from siths_testkit.pki import TestPki, init_test_pki  # noqa: E402
from siths_testkit.pki.cards import issue_card_for_public_key, load_issuer  # noqa: E402
from tests.helpers import saml_sp  # noqa: E402

BIN = Path(sys.executable).parent
GOTEBORG = "2120001355"
SAMBI_HSA_ID = "http://sambi.se/attributes/1/employeeHsaId"
CARD_PEOPLE = {"anna": "SE2120001355-E0001", "bertil": "SE2120001355-E0002"}
SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its reaped children, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def tree_cpu(pid: int) -> float:
    """CPU time of a process and its children, live ones included (an ``idp serve`` with
    workers, a PostgreSQL postmaster): reaped children are already in its own figure."""
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in _children(pid))


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine_ticks() -> tuple[int, int]:
    """(idle, all) CPU ticks of the whole machine so far (/proc/stat; idle counts iowait)."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Latencies:
    """Seconds per operation, and how many failed."""

    values: list[float] = field(default_factory=list)
    failures: int = 0
    errors: list[str] = field(default_factory=list)

    def p(self, fraction: float) -> float:
        return percentile(self.values, fraction) * 1000

    @property
    def median(self) -> float:
        return statistics.median(self.values) * 1000 if self.values else float("nan")


def _wait_http(url: str, ca_file: Path, process: subprocess.Popen, log: Path) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited: {log.read_text(errors='replace')[-3000:]}")
        try:
            httpx.get(url, verify=context, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer: {log.read_text(errors='replace')[-3000:]}")


def _wait_workers(url: str, ca_file: Path, workers: int) -> None:
    """Until ``workers`` different worker processes have answered ``url`` (``/healthz`` names
    the worker; each new connection may go to any of them)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    seen: set[int] = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            seen.add(httpx.get(url, verify=context, timeout=2).json()["pid"])
        if len(seen) >= workers:
            return
        time.sleep(0.1)
    raise RuntimeError(f"only {len(seen)} of {workers} workers answered {url}")


def _run(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(
        args, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{args} failed: {result.stderr}")


# --- the world a deployment lives in ----------------------------------------------------------


@dataclass
class Lab:
    """A test PKI, its OCSP responder, the people, and cards for the cross-device benchmark."""

    work: Path
    pki: TestPki
    responder: subprocess.Popen
    people_csv: Path
    # HSA-ID → (certificate PEM path, key PEM path) of generated EC cards.
    order_cards: dict[str, tuple[Path, Path]]

    def stop(self) -> None:
        self.responder.terminate()
        self.responder.wait(timeout=10)


def make_lab(work: Path, *, order_people: int = 0) -> Lab:
    revocation_port = free_port()
    revocation_url = f"http://127.0.0.1:{revocation_port}"
    pki = init_test_pki(work / "pki", revocation_url=revocation_url)
    log = work / "ocsp.log"
    with open(log, "wb") as out:
        responder = subprocess.Popen(
            [str(BIN / "idp"), "pki", "ocsp-responder", "--dir", str(pki.directory),
             "--next-update-seconds", "600", "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    _wait_http(f"{revocation_url}/health", pki.tls_ca_cert, responder, log)
    rows = ["hsa_id,given_name,surname,title,organisation,mail,person_key"]
    rows += [
        "SE2120001355-E0001,Anna,Andersson,,Göteborgs Stad,,",
        "SE2120001355-E0002,Bertil,Berg,,Göteborgs Stad,,",
    ]
    cards: dict[str, tuple[Path, Path]] = {}
    if order_people:
        issuer = load_issuer(pki.hsa_ca_cert, pki.hsa_ca_key)
        card_dir = work / "order-cards"
        card_dir.mkdir()
        for number in range(1, order_people + 1):
            hsa_id = f"SE2120001355-B{number:04d}"
            key = ec.generate_private_key(ec.SECP256R1())
            certificate = issue_card_for_public_key(
                pki, key.public_key(), hsa_id=hsa_id, given_name="Bench",
                surname=f"Person{number}", issuer=issuer,
            )  # fmt: skip
            cert_path, key_path = card_dir / f"{hsa_id}.crt", card_dir / f"{hsa_id}.key"
            cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
            key_path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            cards[hsa_id] = (cert_path, key_path)
            rows.append(f"{hsa_id},Bench,Person{number},,Göteborgs Stad,,")
    people_csv = work / "people.csv"
    people_csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return Lab(work, pki, responder, people_csv, cards)


# --- deployments ----------------------------------------------------------------------------


@dataclass
class Deployment:
    name: str
    base_url: str
    cert_login_url: str
    lab: Lab
    sp: saml_sp.TestServiceProvider
    # Processes whose CPU time is "the server's".
    server_pids: list[int]
    # Every node's /metrics (per node; read from loopback, which the nodes allow).
    metrics_urls: list[str]
    processes: list[subprocess.Popen]
    postgres: PostgresCluster | None = None
    nginx: NginxProcess | None = None

    @property
    def ca_file(self) -> Path:
        return self.lab.pki.tls_ca_cert

    def server_cpu(self) -> float:
        total = sum(tree_cpu(pid) for pid in self.server_pids)
        if self.postgres is not None:
            total += _postgres_cpu(self.postgres)
        return total

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for process in self.processes:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        if self.postgres is not None:
            self.postgres.stop()


def _postgres_cpu(postgres: PostgresCluster) -> float:
    pid_file = postgres.directory / "data" / "postmaster.pid"
    try:
        master = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return tree_cpu(master)


def _common_env(lab: Lab, work: Path, base_url: str, cert_login_url: str) -> dict[str, str]:
    sp_metadata = work / "sp-metadata"
    sp_metadata.mkdir(exist_ok=True)
    return {
        "IDP_PKI_DIR": str(lab.pki.directory),
        "IDP_SP_METADATA_DIR": str(sp_metadata),
        "IDP_BASE_URL": base_url,
        "IDP_CERT_LOGIN_URL": cert_login_url,
        "IDP_ACCEPTED_ORGANISATIONS": json.dumps([GOTEBORG]),
        "IDP_PAIRWISE_SECRET": secrets.token_hex(32),
        "IDP_OIDC_KEYS_DIR": str(work / "oidc-keys"),
    }


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )


def _attach_sp(
    work: Path, base_url: str, ca_file: Path, env: dict[str, str]
) -> saml_sp.TestServiceProvider:
    metadata = httpx.get(
        f"{base_url}/saml/metadata", verify=ssl.create_default_context(cafile=str(ca_file))
    )
    metadata.raise_for_status()
    idp_metadata = work / "idp-metadata.xml"
    idp_metadata.write_text(metadata.text, encoding="utf-8")
    sp = saml_sp.make_service_provider(
        work / "sp", entity_id="https://sp.example.test/metadata", idp_metadata_file=idp_metadata
    )
    (Path(env["IDP_SP_METADATA_DIR"]) / "sp.xml").write_text(sp.metadata_xml, encoding="utf-8")
    return sp


def embedded(lab: Lab, work: Path, *, workers: int = 1) -> Deployment:
    """One ``idp serve`` node: HTTPS and the certificate listener, SQLite under var/; with
    ``workers`` > 1, that many worker processes sharing the ports under a supervisor."""
    work.mkdir(parents=True)
    port, cert_port = free_port(), free_port()
    base_url, cert_login_url = f"https://localhost:{port}", f"https://localhost:{cert_port}"
    env = {
        **_common_env(lab, work, base_url, cert_login_url),
        "IDP_VAR_DIR": str(work / "var"),
        "IDP_PORT": str(port),
        "IDP_CERT_PORT": str(cert_port),
    }
    _run([str(BIN / "idp"), "people", "import", str(lab.people_csv)], env)
    log = work / "idp.log"
    process = _start(
        [str(BIN / "idp"), "serve", "--workers", str(workers), "--log-level", "warning"], env, log
    )
    try:
        _wait_http(f"{base_url}/healthz", lab.pki.tls_ca_cert, process, log)
        if workers > 1:
            _wait_workers(f"{base_url}/healthz", lab.pki.tls_ca_cert, workers)
        sp = _attach_sp(work, base_url, lab.pki.tls_ca_cert, env)
    except Exception:
        process.kill()
        raise
    shape = f"{workers} worker processes" if workers > 1 else "1 process"
    # One /metrics: whichever worker answers reports the whole node.
    return Deployment(
        f"embedded: {shape}, SQLite", base_url, cert_login_url, lab, sp, [process.pid],
        [f"{base_url}/metrics"], [process],
    )  # fmt: skip


def scaled(lab: Lab, work: Path, *, nginx_workers: int = 1) -> Deployment:
    """nginx → two ``idp serve --behind-proxy`` nodes → PostgreSQL (fsync on)."""
    work.mkdir(parents=True)
    postgres = start_postgres(free_port(), durable=True)
    https_port, cert_port = free_port(), free_port()
    base_url = f"https://localhost:{https_port}"
    cert_login_url = f"https://localhost:{cert_port}"
    env = {
        **_common_env(lab, work, base_url, cert_login_url),
        "IDP_DATABASE_URL": postgres.url,
        "IDP_BEHIND_PROXY": "true",
        "IDP_HOST": "127.0.0.1",
        "IDP_TRUSTED_PROXIES": json.dumps(["127.0.0.1/32"]),
    }
    processes: list[subprocess.Popen] = []
    nginx = None
    try:
        _run([str(BIN / "idp"), "db", "upgrade"], env)
        _run([str(BIN / "idp"), "people", "import", str(lab.people_csv)], env)
        ports = []
        for name in ("a", "b"):
            port = free_port()
            node_env = {
                **env, "IDP_PORT": str(port), "IDP_VAR_DIR": str(work / f"var-{name}"),
                "IDP_NODE_NAME": name,
            }  # fmt: skip
            log = work / f"node-{name}.log"
            process = _start(
                [str(BIN / "idp"), "serve", "--behind-proxy", "--log-level", "warning"],
                node_env,
                log,
            )
            processes.append(process)
            _wait_http(f"http://127.0.0.1:{port}/healthz", lab.pki.tls_ca_cert, process, log)
            ports.append(port)
        nginx = start_nginx(
            {
                "IDP_NODE_A": f"127.0.0.1:{ports[0]}",
                "IDP_NODE_B": f"127.0.0.1:{ports[1]}",
                "IDP_LISTEN": "127.0.0.1",
                "IDP_HTTPS_PORT": str(https_port),
                "IDP_CERT_PORT": str(cert_port),
                "IDP_SERVER_NAME": "localhost",
                "IDP_TLS_CERT": str(lab.pki.tls_server_cert),
                "IDP_TLS_KEY": str(lab.pki.tls_server_key),
                "IDP_ACCESS_LOG": "/dev/null",
            },
            wait_for_port=https_port,
            workers=nginx_workers,
        )
        sp = _attach_sp(work, base_url, lab.pki.tls_ca_cert, env)
    except Exception:
        if nginx is not None:
            nginx.stop()
        for process in processes:
            process.kill()
        postgres.stop()
        raise
    pids = [process.pid for process in processes] + [nginx.process.pid]
    return Deployment(
        "nginx + 2 nodes, PostgreSQL", base_url, cert_login_url, lab, sp, pids,
        [f"http://127.0.0.1:{port}/metrics" for port in ports], processes, postgres, nginx,
    )  # fmt: skip


# The development machine has 2 cores: one worker process per core.
DEFAULT_EMBEDDED_WORKERS = 2


def add_workers_option(parser: argparse.ArgumentParser) -> None:
    """``--workers N``: worker processes of the embedded node (the scaled nodes stay at one)."""
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_EMBEDDED_WORKERS,
        help="worker processes of the embedded node (idp serve --workers); 1: one process",
    )


def deploy(lab: Lab, work: Path, args: argparse.Namespace) -> Deployment:
    """The deployment a benchmark's options ask for: ``--scaled``, else embedded with
    ``--workers``."""
    if args.scaled:
        return scaled(lab, work)
    return embedded(lab, work, workers=args.workers)


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="idp-bench-") as directory:
        yield Path(directory)


# --- reading a Response without verifying it (the loop); verifying a sample (after) -----------


def response_facts(saml_response: str) -> tuple[str, str, str]:
    """(InResponseTo, status, HSA-ID) read from the XML, nothing verified."""
    root = ElementTree.fromstring(base64.b64decode(saml_response))
    status = root.find(f"{SAMLP}Status/{SAMLP}StatusCode")
    hsa_id = ""
    for attribute in root.iter(f"{SAML}Attribute"):
        if attribute.get("Name") == SAMBI_HSA_ID:
            value = attribute.find(f"{SAML}AttributeValue")
            hsa_id = (value.text or "") if value is not None else ""
    return (
        root.get("InResponseTo", ""),
        status.get("Value", "") if status is not None else "",
        hsa_id,
    )


def verify_sample(
    deployment: Deployment, samples: Sequence[tuple[str, str, str]], limit: int = 20
) -> tuple[int, int]:
    """Verify up to ``limit`` (saml_response, request_id, hsa_id) with the SP: (ok, checked)."""
    ok = 0
    chosen = list(samples)[:: max(1, len(samples) // limit)][:limit]
    for saml_response, request_id, hsa_id in chosen:
        try:
            ava = deployment.sp.parse(saml_response, request_id).ava
        except Exception as exc:  # any refusal by the SP counts as not verified
            print(f"  the SP refused a Response: {type(exc).__name__}: {exc}")
            continue
        ok += ava.get(SAMBI_HSA_ID) == [hsa_id]
    return ok, len(chosen)


_ROUTE_SAMPLE = re.compile(
    r"idp_http_request_duration_seconds_(sum|count)\{(?P<labels>[^}]*)\} (?P<value>\S+)"
)


def route_times(deployment: Deployment) -> dict[str, tuple[float, float]]:
    """Per route template: (requests, seconds spent in the IdP), summed over the nodes, from
    their own latency histograms (``idp_http_request_duration_seconds``)."""
    context = ssl.create_default_context(cafile=str(deployment.ca_file))
    totals: dict[str, list[float]] = {}
    for url in deployment.metrics_urls:
        text = httpx.get(url, verify=context, timeout=10).text
        for line in text.splitlines():
            match = _ROUTE_SAMPLE.match(line)
            if not match:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
            entry = totals.setdefault(f"{labels['method']} {labels['route']}", [0.0, 0.0])
            entry[0 if match.group(1) == "count" else 1] += float(match["value"])
    return {route: (count, seconds) for route, (count, seconds) in totals.items()}


def header(title: str, deployments: Sequence[Deployment]) -> None:
    print(title)
    print(f"machine: {os.cpu_count()} CPUs; load average before: {load_average()}")
    for deployment in deployments:
        print(f"  {deployment.name}: {deployment.base_url}")

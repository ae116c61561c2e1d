"""Complete card logins against this IdP and against SimpleSAMLphp, same client, same machine.

    .venv/bin/python benchmarks/peers.py [--seconds 20] [--concurrency 1,4,8]
        [--sides embedded,nginx,simplesamlphp] [--workers 2] [--warmup 2] [--rounds 1]

The IdPs, all on loopback under one temporary directory, all started and stopped here:

- **embedded**: one ``idp serve`` node (HTTPS + certificate listener, SQLite, ``--workers``
  worker processes) — benchmarks/harness.py's embedded deployment;
- **nginx**: nginx terminating TLS (``docker/nginx/idp.conf.template``) for two
  ``idp serve --behind-proxy`` nodes on PostgreSQL — harness.py's scaled deployment;
- **simplesamlphp**: SimpleSAMLphp 1.19 from Debian with its ``authX509`` module and slapd,
  php-fpm behind nginx (benchmarks/simplesamlphp.py).

Each has its own pysaml2 SP (``tests/helpers/saml_sp.py``) configured from that IdP's
metadata, signing its AuthnRequests, and the same two test cards (test PKI, ``init_test_pki``).

A **login**: a new browser (benchmarks/browser.py: cookie jar, TLS connections) gets the SP's
redirect URL (a signed AuthnRequest made before the run), follows the IdP's pages as a browser
does with the card as client certificate, and ends at the page that posts the Response to the
SP. It counts only if that Response is a Success for that request, signed in full: every
Response is checked after the run (Response and Assertion signature with the key from the
IdP's metadata, each covering its own element, RSA-SHA256 with SHA-256 digests; InResponseTo,
Issuer, Destination, HSA-ID) and a sample again by the pysaml2 SP.

The **transport floor** of a side: the same client, a new browser each time, making the
requests of that side's login (same origins, so the same TLS handshakes, the card where the
login presents it) to a static answer on each origin: TLS and HTTP alone.

``--concurrency`` browsers at once, one process each; runs of ``--seconds`` after ``--warmup``
seconds, interleaved: for each concurrency, each side's login run, then each side's floor
run. With ``--rounds N`` the login runs are repeated N times, each round every side in turn
(every other round in the opposite order; floors once), and each ratio to SimpleSAMLphp is
given per round (a side against the peer's run of the same round) and as the median over the
rounds: one run's ratio moves by about ±5% between runs of the same code, more than the
differences the targets are about.

Server CPU is utime + stime from /proc of every server process (and its live children) before
and after a run, divided by the Responses verified in that run; the client's CPU per login is
the browsers' own.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import math
import multiprocessing
import os
import platform
import ssl
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import browser
import harness
import simplesamlphp
import xmlsec
from lxml import etree

from siths_testkit.local_cluster import NginxProcess, start_nginx
from siths_testkit.pki import TestPki
from tests.helpers import saml_sp

SIDES = ("embedded", "nginx", "simplesamlphp")
KINDS = ("login", "floor", "nginx-floor")
DS = "{http://www.w3.org/2000/09/xmldsig#}"
MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SP_ENTITY_ID = "https://sp.example.test/metadata"
FLOOR_TEMPLATE = Path(__file__).resolve().parent / "static-nginx.conf.template"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@dataclass
class Side:
    """One IdP as the benchmark sees it."""

    key: str
    name: str
    sp: saml_sp.TestServiceProvider
    issuer: str
    signing_certs: list[bytes]
    # CPU seconds so far, by program.
    cpu: dict[str, Callable[[], float]]
    # A static answer on each origin the login visits ("https://host:port" → URL), from the
    # IdP's own servers, and from the floor nginx (None: the side's own answers are nginx's).
    static: dict[str, str]
    nginx_static: dict[str, str] | None
    stop: Callable[[], None]
    # The floors' request sets by kind ("floor", "nginx-floor"), from the probe login.
    floor_urls: dict[str, list[str]] = field(default_factory=dict)
    best_rate: float = 0.0


# --- the browsers (one process each) ----------------------------------------------------------


@dataclass(frozen=True)
class Job:
    kind: str  # "login", "floor" or "nginx-floor"
    logins: list[tuple[str, str]]  # (redirect URL, request ID), used in order
    floor_urls: list[str]
    card: tuple[str, str]
    hsa_id: str  # the card's
    ca_file: str
    start_at: float
    stop_at: float


# (started, finished, error, SAMLResponse, request ID, ACS URL, the card's HSA-ID)
Record = tuple[float, float, str, str, str, str, str]


def run_browsers(job: Job) -> tuple[list[Record], float, bool]:
    """New browsers one after another until ``stop_at``: the records, this process's CPU
    seconds, and whether it ran out of login URLs."""
    context = ssl.create_default_context(cafile=job.ca_file)
    context.load_cert_chain(*job.card)
    records: list[Record] = []
    time.sleep(max(0.0, job.start_at - time.time()))
    cpu_before = time.process_time()
    index, exhausted = 0, False
    while time.time() < job.stop_at:
        request_id = saml_response = acs_url = error = ""
        if job.kind == "login":
            if index == len(job.logins):
                exhausted = True
                break
            url, request_id = job.logins[index]
            index += 1
        started = time.time()
        try:
            with browser.Browser(context) as client:
                if job.kind == "login":
                    login = client.login(url)
                    saml_response, acs_url = login.saml_response, login.acs_url
                else:
                    for static_url in job.floor_urls:
                        answer = client.get(static_url)
                        if answer.status != 200:
                            raise browser.LoginFailed(f"{static_url}: HTTP {answer.status}")
        except Exception as exc:  # a failed login is a figure, not a crash
            error = f"{type(exc).__name__}: {exc}"[:200]
        records.append(
            (started, time.time(), error, saml_response, request_id, acs_url, job.hsa_id)
        )
    return records, time.process_time() - cpu_before, exhausted


# --- checking a Response ----------------------------------------------------------------------


def check_response(
    side: Side, saml_response: str, request_id: str, acs_url: str, hsa_id: str
) -> str:
    """'' if the Response is a signed Success for ``request_id`` and the person ``hsa_id``,
    posted to the SP's ACS, else what is wrong."""
    try:
        xml = base64.b64decode(saml_response)
        root = etree.fromstring(xml, _PARSER)
    except (ValueError, etree.XMLSyntaxError) as exc:
        return f"unreadable Response: {exc}"
    if root.getroottree().docinfo.doctype:
        return "a DTD in the Response"
    if root.tag != f"{harness.SAMLP}Response":
        return f"not a Response: {root.tag}"
    if root.get("InResponseTo") != request_id:
        return f"InResponseTo {root.get('InResponseTo')!r}, not {request_id!r}"
    if root.get("Destination") != acs_url or acs_url != side.sp.acs_url:
        return f"Destination {root.get('Destination')!r}, form to {acs_url!r}"
    status = root.find(f"{harness.SAMLP}Status/{harness.SAMLP}StatusCode")
    if status is None or status.get("Value") != harness.SUCCESS:
        return f"status {status.get('Value') if status is not None else None}"
    issuer = root.find(f"{harness.SAML}Issuer")
    if issuer is None or issuer.text != side.issuer:
        return "wrong Issuer"
    assertions = root.findall(f"{harness.SAML}Assertion")
    if len(assertions) != 1 or root.findall(f".//{harness.SAML}EncryptedAssertion"):
        return f"{len(assertions)} Assertions"
    xmlsec.tree.add_ids(root, ["ID"])
    for element in (assertions[0], root):
        problem = _check_signature(side, element)
        if problem:
            return problem
    hsa_ids = [
        value.text
        for attribute in assertions[0].iter(f"{harness.SAML}Attribute")
        if attribute.get("Name") == harness.SAMBI_HSA_ID
        for value in attribute.findall(f"{harness.SAML}AttributeValue")
    ]
    if hsa_ids != [hsa_id]:
        return f"HSA-ID {hsa_ids}"
    return ""


def _check_signature(side: Side, element: etree._Element) -> str:
    """The element's own enveloped signature, over itself, by one of the IdP's keys."""
    what = etree.QName(element).localname
    signatures = element.findall(f"{DS}Signature")
    if len(signatures) != 1:
        return f"{what}: {len(signatures)} signatures"
    signature = signatures[0]
    references = signature.findall(f"{DS}SignedInfo/{DS}Reference")
    if len(references) != 1 or references[0].get("URI") != f"#{element.get('ID')}":
        return f"{what}: the signature does not cover it"
    method = signature.find(f"{DS}SignedInfo/{DS}SignatureMethod")
    digest = references[0].find(f"{DS}DigestMethod")
    if method is None or method.get("Algorithm") != RSA_SHA256:
        return f"{what}: not RSA-SHA256"
    if digest is None or digest.get("Algorithm") != SHA256:
        return f"{what}: not SHA-256 digests"
    for cert in side.signing_certs:
        context = xmlsec.SignatureContext()
        context.key = xmlsec.Key.from_memory(cert, xmlsec.constants.KeyDataFormatCertPem)
        with contextlib.suppress(xmlsec.Error):
            context.verify(signature)
            return ""
    return f"{what}: signature does not verify"


# --- the sides --------------------------------------------------------------------------------


def _metadata_facts(metadata_xml: bytes) -> tuple[str, list[bytes]]:
    """(entityID, signing certificates as PEM) of an IdP's metadata."""
    root = etree.fromstring(metadata_xml, _PARSER)
    certs = []
    for descriptor in root.iter(f"{MD}KeyDescriptor"):
        if descriptor.get("use") in (None, "signing"):
            for value in descriptor.iter(f"{DS}X509Certificate"):
                body = "".join((value.text or "").split())
                lines = [body[i : i + 64] for i in range(0, len(body), 64)]
                pem = "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines)
                certs.append((pem + "\n-----END CERTIFICATE-----\n").encode())
    return root.get("entityID", ""), certs


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def our_side(key: str, deployment: harness.Deployment, directory: Path) -> Side:
    # Where harness.py put the metadata its SP was configured from.
    metadata = (directory / "idp-metadata.xml").read_bytes()
    entity_id, certs = _metadata_facts(metadata)
    if key == "embedded":
        name = f"this project, embedded ({deployment.name.split(': ', 1)[1]})"
        supervisor = deployment.processes[0].pid
        cpu = {"idp serve": lambda: harness.tree_cpu(supervisor)}
    else:
        name = "this project behind nginx (2 nodes, PostgreSQL)"
        nodes = [process.pid for process in deployment.processes]
        assert deployment.nginx is not None and deployment.postgres is not None
        nginx_pid, postgres = deployment.nginx.process.pid, deployment.postgres
        cpu = {
            "idp nodes": lambda: sum(harness.tree_cpu(pid) for pid in nodes),
            "nginx": lambda: harness.tree_cpu(nginx_pid),
            "postgres": lambda: harness._postgres_cpu(postgres),
        }
    static = {
        _origin(url): f"{url}/static/style.css"
        for url in (deployment.base_url, deployment.cert_login_url)
    }
    return Side(key, name, deployment.sp, entity_id, certs, cpu, static, {}, deployment.stop)


def ssp_side(pki: TestPki, work: Path, php_children: int) -> Side:
    people = [
        simplesamlphp.Person(card.hsa_id or "", card.given_name, card.surname, card.cert)
        for name, card in pki.cards.items()
        if name in harness.CARD_PEOPLE
    ]
    peer = simplesamlphp.start(
        work / "simplesamlphp",
        port=harness.free_port(),
        ldap_port=harness.free_port(),
        people=people,
        idp_key=pki.idp_signing_key,
        idp_cert=pki.idp_signing_cert,
        tls_cert=pki.tls_server_cert,
        tls_key=pki.tls_server_key,
        php_children=php_children,
    )
    try:
        context = ssl.create_default_context(cafile=str(pki.tls_ca_cert))
        with browser.Browser(context) as client:
            answer = client.get(peer.metadata_url)
        if answer.status != 200:
            raise RuntimeError(f"SimpleSAMLphp's metadata: HTTP {answer.status}")
        metadata_file = work / "simplesamlphp-metadata.xml"
        metadata_file.write_bytes(answer.body)
        entity_id, certs = _metadata_facts(answer.body)
        sp_dir = work / "sp-simplesamlphp"
        sp = saml_sp.make_service_provider(
            sp_dir, entity_id=SP_ENTITY_ID, idp_metadata_file=metadata_file
        )
        slug = urllib.parse.urlsplit(SP_ENTITY_ID).hostname
        peer.register_sp(sp.entity_id, sp.acs_url, (sp_dir / f"{slug}.crt.pem").read_bytes())
    except Exception:
        peer.stop()
        raise
    groups = peer.process_groups()
    cpu = {
        name: (lambda pids=pids: sum(harness.tree_cpu(pid) for pid in pids))
        for name, pids in groups.items()
    }
    static = {_origin(peer.base_url): peer.base_url + simplesamlphp.STATIC_PATH}
    name = "SimpleSAMLphp 1.19 (Debian) + authX509 + slapd, php-fpm behind nginx"
    return Side("simplesamlphp", name, sp, entity_id, certs, cpu, static, None, peer.stop)


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Run:
    side: Side
    kind: str
    concurrency: int
    seconds: float
    latencies: harness.Latencies
    # Logins (or floor request sets) completed and verified over the whole run, warm-up too.
    completed: int
    failed: int
    server_cpu: dict[str, float]
    client_cpu: float
    exhausted: bool
    samples: list[tuple[str, str]]
    # Share of the machine's CPU time no process used during the run: on a machine both
    # sides' servers share with the load client, what keeps logins/s below what the CPU allows.
    machine_idle: float
    # Which of ``--rounds`` the run belongs to (floors run in the first only).
    round: int = 1

    @property
    def rate(self) -> float:
        return len(self.latencies.values) / self.seconds

    def per_login_ms(self, seconds: float) -> float:
        return seconds / self.completed * 1000 if self.completed else float("nan")

    @property
    def server_ms(self) -> float:
        return self.per_login_ms(sum(self.server_cpu.values()))


def measure(
    side: Side,
    kind: str,
    *,
    concurrency: int,
    seconds: float,
    warmup: float,
    ca_file: Path,
    cards: list[tuple[str, str]],
    hsa_ids: list[str],
    floor_nginx_cpu: dict[str, Callable[[], float]],
) -> Run:
    duration = warmup + seconds
    logins: list[list[tuple[str, str]]] = [[] for _ in range(concurrency)]
    if kind == "login":
        # Enough URLs for well over the fastest rate seen on this side (made before the run:
        # signing AuthnRequests is the SP's work, not the browser's).
        expected = max(side.best_rate * 2.5, 100.0) * duration
        per_browser = math.ceil(expected / concurrency) + 20
        logins = [[side.sp.login_url() for _ in range(per_browser)] for _ in range(concurrency)]
    start_at = time.time() + 0.5 + 0.05 * concurrency
    jobs = [
        Job(kind, logins[number], side.floor_urls.get(kind, []), cards[number % len(cards)],
            hsa_ids[number % len(cards)], str(ca_file), start_at, start_at + duration)
        for number in range(concurrency)
    ]  # fmt: skip
    readers = floor_nginx_cpu if kind == "nginx-floor" else side.cpu
    cpu_before = {name: read() for name, read in readers.items()}
    with multiprocessing.get_context("fork").Pool(concurrency) as pool:
        pending = pool.map_async(run_browsers, jobs, chunksize=1)
        # The machine's idle share over the measured window only (not the pool's start-up).
        time.sleep(max(0.0, start_at + warmup - time.time()))
        idle_before, all_before = harness.machine_ticks()
        time.sleep(max(0.0, start_at + duration - time.time()))
        idle_after, all_after = harness.machine_ticks()
        results = pending.get()
    cpu_after = {name: read() for name, read in readers.items()}
    window_start, window_end = start_at + warmup, start_at + duration
    latencies = harness.Latencies()
    completed = failed = 0
    samples: list[tuple[str, str]] = []
    for records, _cpu, _exhausted in results:
        for started, finished, error, saml_response, request_id, acs_url, hsa_id in records:
            if not error and kind == "login":
                error = check_response(side, saml_response, request_id, acs_url, hsa_id)
            if error:
                failed += 1
                latencies.errors.append(error)
            else:
                completed += 1
                if len(samples) < 200:
                    samples.append((saml_response, request_id))
            if started >= window_start and finished <= window_end and not error:
                latencies.values.append(finished - started)
    run = Run(
        side, kind, concurrency, seconds, latencies, completed, failed,
        {name: cpu_after[name] - cpu_before[name] for name in cpu_before},
        sum(cpu for _, cpu, _ in results) / completed if completed else float("nan"),
        any(exhausted for _, _, exhausted in results), samples,
        (idle_after - idle_before) / max(1, all_after - all_before),
    )  # fmt: skip
    if kind == "login":
        side.best_rate = max(side.best_rate, completed / duration)
    return run


def start_floor_nginx(pki: TestPki) -> tuple[NginxProcess, str, str]:
    """The floor nginx: (process, public origin's static URL, card origin's static URL)."""
    plain_port, card_port = harness.free_port(), harness.free_port()
    nginx = start_nginx(
        {
            "LISTEN": "127.0.0.1",
            "PLAIN_PORT": str(plain_port),
            "CARD_PORT": str(card_port),
            "TLS_CERT": str(pki.tls_server_cert),
            "TLS_KEY": str(pki.tls_server_key),
            "ROOT": str(simplesamlphp.SSP_ROOT / "www" / "resources"),
            "IDP_ACCESS_LOG": "/dev/null",
        },
        wait_for_port=card_port,
        template=FLOOR_TEMPLATE,
    )
    return (
        nginx,
        f"https://localhost:{plain_port}/default.css",
        f"https://localhost:{card_port}/default.css",
    )


def browsers_of(lab: harness.Lab) -> dict[str, Any]:
    """:func:`measure`'s ``ca_file``, ``cards`` and ``hsa_ids``: the browsers take the test
    PKI's cards of :data:`harness.CARD_PEOPLE` in turn."""
    return {
        "ca_file": lab.pki.tls_ca_cert,
        "cards": [
            (str(lab.pki.cards[name].cert), str(lab.pki.cards[name].key))
            for name in harness.CARD_PEOPLE
        ],
        "hsa_ids": list(harness.CARD_PEOPLE.values()),
    }


def probe(side: Side, ca_file: Path, card: tuple[str, str], hsa_id: str) -> None:
    """One login, to learn the side's request shape for its floor (and fail early)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.load_cert_chain(*card)
    url, request_id = side.sp.login_url()
    with browser.Browser(context) as client:
        login = client.login(url)
    problem = check_response(side, login.saml_response, request_id, login.acs_url, hsa_id)
    if problem:
        raise RuntimeError(f"{side.name}: the probe login's Response: {problem}")
    side.floor_urls["floor"] = [side.static[_origin(step)] for step in login.urls]
    if side.nginx_static is not None:
        side.floor_urls["nginx-floor"] = [side.nginx_static[_origin(s)] for s in login.urls]


# --- the report -------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value == value else "-"


def _versions() -> str:
    def package(name: str) -> str:
        answer = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True
        )
        return answer.stdout.strip() or "?"

    return (
        f"Python {platform.python_version()}; SimpleSAMLphp {package('simplesamlphp')}, "
        f"PHP {package('php8.2-fpm')}, nginx {package('nginx')}, slapd {package('slapd')}"
    )


def report(runs: list[Run], args: argparse.Namespace) -> None:
    print(f"\nComplete card logins, {args.seconds:g} s per run after {args.warmup:g} s warm-up")
    print(
        "| IdP | C | logins/s | p50 | p99 | failed | server CPU per login | by process "
        "| client CPU per login | machine idle | floor: own static /s | server CPU "
        "| floor: nginx static /s | server CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    by_kind = {(run.kind, run.side.key, run.concurrency): run for run in runs}

    def floor(kind: str, run: Run) -> Run | None:
        found = by_kind.get((kind, run.side.key, run.concurrency))
        # SimpleSAMLphp's own static answers are nginx's: one floor, shown in both columns.
        return found or by_kind.get(("floor", run.side.key, run.concurrency))

    logins = [run for run in runs if run.kind == "login"]
    rounds = max((run.round for run in logins), default=1)
    for run in logins:
        by_process = " · ".join(
            f"{name} {run.per_login_ms(cpu):.1f}" for name, cpu in run.server_cpu.items()
        )
        cells = [
            run.side.name + (f" (round {run.round})" if rounds > 1 else ""),
            str(run.concurrency),
            f"{run.rate:.1f}",
            _ms(run.latencies.p(0.5)),
            _ms(run.latencies.p(0.99)),
            f"{run.failed}{' (ran out of URLs)' if run.exhausted else ''}",
            _ms(run.server_ms),
            by_process,
            _ms(run.client_cpu * 1000),
            f"{run.machine_idle:.1%}",
        ]
        for kind in ("floor", "nginx-floor"):
            found = floor(kind, run)
            cells += [f"{found.rate:.1f}", _ms(found.server_ms)] if found else ["-", "-"]
        print("| " + " | ".join(cells) + " |")
    report_ratios(logins, floor)
    for run in runs:
        for error in sorted(set(run.latencies.errors))[:3]:
            print(f"  {run.side.key} {run.kind} C={run.concurrency} failure: {error}")


def report_ratios(logins: list[Run], floor: Callable[[str, Run], Run | None]) -> None:
    """This IdP's login runs ÷ SimpleSAMLphp's of the same round and C; with several rounds,
    the median of each ratio too."""
    rounds = max((run.round for run in logins), default=1)
    peer = {(run.round, run.concurrency): run for run in logins if run.side.key == "simplesamlphp"}
    ours = [r for r in logins if r.side.key != "simplesamlphp" and (r.round, r.concurrency) in peer]
    if not ours:
        return
    print("\nThis project ÷ SimpleSAMLphp, same C (below 1: less CPU, lower latency)")
    print(
        "| IdP | C | round | logins/s | p99 | server CPU per login "
        "| IdP processes' CPU ÷ php-fpm's | floor server CPU: own static | nginx static |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    columns = ("logins/s", "p99", "server CPU", "IdP processes")
    ratios: dict[tuple[str, int], list[dict[str, float]]] = {}
    for run in ours:
        other = peer[(run.round, run.concurrency)]
        idp_cpu = sum(cpu for name, cpu in run.server_cpu.items() if name.startswith("idp"))
        values = dict(
            zip(
                columns,
                (
                    run.rate / other.rate,
                    run.latencies.p(0.99) / other.latencies.p(0.99),
                    run.server_ms / other.server_ms,
                    run.per_login_ms(idp_cpu) / other.per_login_ms(other.server_cpu["php-fpm"]),
                ),
                strict=True,
            )
        )
        ratios.setdefault((run.side.name, run.concurrency), []).append(values)
        cells = [run.side.name, str(run.concurrency), str(run.round)]
        cells += [f"{values[column]:.2f}×" for column in columns]
        for kind in ("floor", "nginx-floor"):
            mine, theirs = floor(kind, run), floor(kind, other)
            cells.append(f"{mine.server_ms / theirs.server_ms:.2f}×" if mine and theirs else "-")
        print("| " + " | ".join(cells) + " |")
    if rounds > 1:
        for (name, concurrency), rows in ratios.items():
            medians = [statistics.median(row[column] for row in rows) for column in columns]
            cells = [name, str(concurrency), f"median of {len(rows)}"]
            cells += [f"**{value:.2f}×**" for value in medians] + ["", ""]
            print("| " + " | ".join(cells) + " |")


def verify_with_sp(side: Side, run: Run, limit: int) -> str:
    chosen = run.samples[:: max(1, len(run.samples) // limit)][:limit]
    ok = 0
    for saml_response, request_id in chosen:
        with contextlib.suppress(Exception):  # any refusal by the SP counts as not verified
            ava = side.sp.parse(saml_response, request_id).ava
            ok += bool(ava.get(harness.SAMBI_HSA_ID))
    return f"{side.key}: {ok}/{len(chosen)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--concurrency", default="1,4,8", help="browsers at once, e.g. 1,4,8")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"some of {','.join(SIDES)}")
    parser.add_argument(
        "--php-children", type=int, default=0, help="php-fpm processes (default: largest C)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="login runs per side and C, interleaved (median)"
    )
    harness.add_workers_option(parser)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    concurrencies = [int(value) for value in args.concurrency.split(",")]
    keys = [key for key in args.sides.split(",") if key]
    if unknown := set(keys) - set(SIDES):
        parser.error(f"unknown sides: {', '.join(sorted(unknown))}")
    if missing := simplesamlphp.missing_programs():
        parser.error(f"not installed (Debian packages): {' '.join(missing)}")
    print(f"machine: {os.cpu_count()} CPUs; load average before: {harness.load_average()}")
    print(_versions(), flush=True)
    with harness.workspace() as work:
        lab = harness.make_lab(work / "lab")
        sides: list[Side] = []
        floor_nginx = None
        try:
            floor_nginx, plain_url, card_url = start_floor_nginx(lab.pki)
            floor_pid = floor_nginx.process.pid
            floor_cpu = {"nginx": lambda: harness.tree_cpu(floor_pid)}
            for key in keys:
                if key == "simplesamlphp":
                    sides.append(ssp_side(lab.pki, work, args.php_children or max(concurrencies)))
                    continue
                make = harness.scaled if key == "nginx" else harness.embedded
                options = {"workers": args.workers} if key == "embedded" else {}
                deployment = make(lab, work / key, **options)
                side = our_side(key, deployment, work / key)
                side.nginx_static = {
                    _origin(deployment.base_url): plain_url,
                    _origin(deployment.cert_login_url): card_url,
                }
                sides.append(side)
            common = {**browsers_of(lab), "floor_nginx_cpu": floor_cpu}
            for side in sides:
                probe(side, lab.pki.tls_ca_cert, common["cards"][0], common["hsa_ids"][0])
                steps = side.floor_urls["floor"]
                print(
                    f"  {side.name}: {len(steps)} requests on "
                    f"{len({_origin(url) for url in steps})} origins per login"
                )
                # Warm caches (OCSP, opcache, metadata) and learn the rate for the URL budget.
                measure(side, "login", concurrency=2, seconds=2, warmup=0.5, **common)
            runs: list[Run] = []
            for concurrency in concurrencies:
                plan = [("login", number) for number in range(1, args.rounds + 1)]
                plan += [(kind, 1) for kind in KINDS if kind != "login"]
                for kind, number in plan:
                    # Every other round in the opposite order, so that neither side always
                    # runs on the machine as the other left it.
                    for side in sides if number % 2 else sides[::-1]:
                        if kind not in side.floor_urls and kind != "login":
                            continue
                        run = measure(
                            side, kind, concurrency=concurrency, seconds=args.seconds,
                            warmup=args.warmup, **common,
                        )  # fmt: skip
                        run.round = number
                        runs.append(run)
                        print(
                            f"  C={concurrency} {kind:11} {side.key:13} {run.rate:7.1f}/s "
                            f"p99 {_ms(run.latencies.p(0.99)):>9}  failed {run.failed}  "
                            f"server {_ms(run.server_ms)}  client {_ms(run.client_cpu * 1000)}"
                            f"  idle {run.machine_idle:.1%}  load {harness.load_average()}",
                            flush=True,
                        )
            report(runs, args)
            last = {run.side.key: run for run in runs if run.kind == "login"}
            checks = [verify_with_sp(side, last[side.key], 10) for side in sides]
            print(f"\nResponses verified again by the pysaml2 SP (sample): {'; '.join(checks)}")
            print(f"load average after: {harness.load_average()}")
        finally:
            for side in sides:
                side.stop()
            if floor_nginx is not None:
                floor_nginx.stop()
            lab.stop()


if __name__ == "__main__":
    main()

"""Complete logins per second over real sockets, with p50/p99 latency.

    .venv/bin/python benchmarks/logins.py [--seconds 20] [--concurrency 8] [--workers 2] [--scaled]

A login is what a user at a Treserva-like SP does with the card in the reader: the SP's
redirect with a signed AuthnRequest → the IdP's chooser → "SITHS eID på denna enhet" (a new TLS
connection presenting the card's certificate; chain, HSA-ID, OCSP with the shared cache) →
back to the IdP → the page that posts a signed SAML Response to the SP's ACS. Every login is a
new browser: new cookie jar, new TLS connections. ``--concurrency`` browsers run at once, each
in its own process, for ``--seconds`` after a short warm-up.

In the same run, side by side:

- **card login**: the above;
- **transport floor**: each browser makes the same connections and the same number of
  requests (three on the IdP's origin, one with the card on the certificate origin) to static
  answers (``/healthz``, a style sheet): TLS and HTTP alone, the ceiling any login could reach
  with this client on this machine.

Default deployment: embedded (one node on SQLite, ``--workers`` worker processes: 2, one per
core of the development machine; 1 is the single process). ``--scaled``: nginx + two nodes on
PostgreSQL, one process each (see benchmarks/cluster.py to have both in one table).
"""

from __future__ import annotations

import argparse
import multiprocessing
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

from siths_testkit.login_driver import card_login

WARMUP_SECONDS = 3.0


@dataclass(frozen=True)
class Job:
    kind: str  # "card" or "floor"
    urls: list[tuple[str, str]]
    card: tuple[str, str]
    base_url: str
    cert_login_url: str
    ca_file: str
    start_at: float
    stop_at: float


# (started, finished, ok, error, saml_response or "", request_id, hsa_id)
Record = tuple[float, float, bool, str, str, str, str]


def _context(job: Job) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=job.ca_file)
    context.load_cert_chain(*job.card)
    return context


def _one(job: Job, client, url: str, request_id: str) -> tuple[bool, str, str, str]:  # type: ignore[no-untyped-def]
    if job.kind == "floor":
        for _ in range(3):
            client.get(f"{job.base_url}/healthz").raise_for_status()
        client.get(f"{job.cert_login_url}/static/style.css").raise_for_status()
        return True, "", "", ""
    result = card_login(client, url, job.base_url)
    in_response_to, status, hsa_id = harness.response_facts(result.saml_response)
    if in_response_to != request_id or status != harness.SUCCESS:
        return False, f"wrong Response: {in_response_to} {status}", "", ""
    return True, "", result.saml_response, hsa_id


def run_worker(job: Job) -> list[Record]:
    import httpx

    context = _context(job)
    records: list[Record] = []
    time.sleep(max(0.0, job.start_at - time.time()))
    for number, (url, request_id) in enumerate(job.urls):
        if time.time() >= job.stop_at:
            break
        started = time.time()
        try:
            with httpx.Client(verify=context, follow_redirects=False, timeout=30) as client:
                ok, error, response, hsa_id = _one(job, client, url, request_id)
        except Exception as exc:  # a failed login is a figure, not a crash
            ok, error, response, hsa_id = False, f"{type(exc).__name__}: {exc}"[:200], "", ""
        keep = response if number % 10 == 0 else ""
        records.append((started, time.time(), ok, error, keep, request_id, hsa_id))
    return records


@dataclass
class Figures:
    rate: float
    latencies: harness.Latencies
    server_cpu: float
    total_cpu: float
    # Wall time over which the CPU figures were taken.
    seconds: float
    samples: list[tuple[str, str, str]]
    # Per route: (requests, mean ms in the IdP) during this measurement.
    routes: dict[str, tuple[float, float]]


def measure(
    deployment: harness.Deployment, kind: str, *, seconds: float, concurrency: int
) -> Figures:
    cards = list(harness.CARD_PEOPLE)
    per_worker = int((seconds + WARMUP_SECONDS) * 60) + 10  # more than any worker can use
    plans = []
    for worker in range(concurrency):
        card = deployment.lab.pki.cards[cards[worker % len(cards)]]
        if kind == "card":
            urls = [deployment.sp.login_url() for _ in range(per_worker)]
        else:
            urls = [("", "")] * per_worker
        plans.append((urls, (str(card.cert), str(card.key))))
    # Every worker starts at the same moment, once all login URLs exist.
    start_at = time.time() + 1.5
    stop_at = start_at + WARMUP_SECONDS + seconds
    jobs = [
        Job(kind, urls, card, deployment.base_url, deployment.cert_login_url,
            str(deployment.ca_file), start_at, stop_at)
        for urls, card in plans
    ]  # fmt: skip
    routes_before = harness.route_times(deployment)
    wall_before = time.monotonic()
    server_before, total_before = deployment.server_cpu(), _machine_cpu()
    with multiprocessing.get_context("fork").Pool(concurrency) as pool:
        results = pool.map(run_worker, jobs)
    server_after, total_after = deployment.server_cpu(), _machine_cpu()
    wall = time.monotonic() - wall_before
    routes = {}
    for route, (count, spent) in harness.route_times(deployment).items():
        old_count, old_spent = routes_before.get(route, (0.0, 0.0))
        if count > old_count:
            routes[route] = (count - old_count, (spent - old_spent) / (count - old_count) * 1000)
    window_start = start_at + WARMUP_SECONDS
    window_end = start_at + WARMUP_SECONDS + seconds
    latencies = harness.Latencies()
    done = 0
    samples = []
    for records in results:
        for started, finished, ok, error, response, request_id, hsa_id in records:
            if started < window_start or finished > window_end:
                continue
            if ok:
                done += 1
                latencies.values.append(finished - started)
                if response:
                    samples.append((response, request_id, hsa_id))
            else:
                latencies.failures += 1
                latencies.errors.append(error)
    return Figures(
        done / seconds,
        latencies,
        server_after - server_before,
        total_after - total_before,
        wall,
        samples,
        routes,
    )


def _machine_cpu() -> float:
    """Busy CPU seconds of the whole machine (all cores), from /proc/stat."""
    import os

    # user nice system idle iowait irq softirq steal (guest time is already in user).
    fields = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def report(title: str, columns: list[tuple[str, Figures]]) -> None:
    width = max(22, *(len(name) + 2 for name, _ in columns))
    print(f"\n{title}")
    print(" " * 34 + "".join(f"{name:>{width}}" for name, _ in columns))

    def row(label: str, values: list[str]) -> None:
        print(f"{label:<34}" + "".join(f"{value:>{width}}" for value in values))

    row("per second (in the window)", [f"{f.rate:.1f}" for _, f in columns])
    row("latency p50", [f"{f.latencies.p(0.5):.1f} ms" for _, f in columns])
    row("latency p99", [f"{f.latencies.p(0.99):.1f} ms" for _, f in columns])
    row("latency max", [f"{f.latencies.p(1.0):.1f} ms" for _, f in columns])
    row(
        "completed / failed",
        [f"{len(f.latencies.values)} / {f.latencies.failures}" for _, f in columns],
    )
    row(
        "server CPU (cores busy)",
        [f"{f.server_cpu / f.seconds:.2f}" for _, f in columns],
    )
    row("whole machine CPU (cores busy)", [f"{f.total_cpu / f.seconds:.2f}" for _, f in columns])
    for name, figures in columns:
        for error in sorted(set(figures.latencies.errors))[:5]:
            print(f"  {name} failure: {error}")
    print("mean time in the IdP per request (its own latency histogram), by route:")
    routes = sorted({route for _, figures in columns for route in figures.routes})
    for route in routes:
        cells = []
        for _, figures in columns:
            count, mean = figures.routes.get(route, (0, float("nan")))
            cells.append(f"{mean:.1f} ms × {count:.0f}" if count else "-")
        row(f"  {route}", cells)


def run_logins(deployment: harness.Deployment, *, seconds: float, concurrency: int) -> Figures:
    return measure(deployment, "card", seconds=seconds, concurrency=concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--scaled", action="store_true", help="nginx + 2 nodes + PostgreSQL")
    harness.add_workers_option(parser)
    args = parser.parse_args()
    with harness.workspace() as work:
        lab = harness.make_lab(work / "lab")
        try:
            deployment = harness.deploy(lab, work / "deployment", args)
            try:
                harness.header("Complete logins over real sockets", [deployment])
                # Warm the revocation cache and the SP metadata reload before measuring.
                measure(deployment, "card", seconds=2, concurrency=2)
                card = measure(
                    deployment, "card", seconds=args.seconds, concurrency=args.concurrency
                )
                floor = measure(
                    deployment, "floor", seconds=args.seconds, concurrency=args.concurrency
                )
                report(
                    f"{deployment.name}; {args.concurrency} browsers at once, "
                    f"{args.seconds:.0f} s each",
                    [("card login", card), ("transport floor", floor)],
                )
                verified, checked = harness.verify_sample(deployment, card.samples)
                print(f"Responses verified in full by the SP (sample): {verified}/{checked}")
                print(f"load average after: {harness.load_average()}")
            finally:
                deployment.stop()
        finally:
            lab.stop()


if __name__ == "__main__":
    main()

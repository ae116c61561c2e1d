"""What revocation checking costs a login: SithsValidator.validate, cold vs warm cache.

    .venv/bin/python benchmarks/revocation.py [--iterations 200]

On a throwaway test PKI, with the real ``idp pki ocsp-responder`` process on a loopback port,
it validates Anna's card the way both login methods do (path validation, HSA-ID, revocation)
with the checker the IdP builds (``RevocationChecker`` + ``DatabaseRevocationCache`` on SQLite):

- *no revocation*: the validator without a checker, the floor;
- *cold cache*: the cache emptied before every call, so each validation asks the responder
  (OCSP request with nonce over HTTP, response signature, responder certificate, CertID,
  freshness) and stores the good answer;
- *warm cache*: the good answer is in the cache (one indexed SQLite read per validation).

Reports median, mean and 95th percentile of each and the cold/warm ratio. The responder is
local, so the cold figure is a floor: a real responder adds a network round trip.
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from cryptography import x509
from sqlalchemy import delete

from idp.db import Database, create_schema
from idp.siths.revocation import RevocationChecker, RevocationPolicy
from idp.siths.trust import load_siths_trust
from idp.siths.validation import SithsValidator
from idp.store.models import RevocationCacheEntry
from idp.store.revocation_cache import DatabaseRevocationCache
from siths_testkit.pki import init_test_pki

BIN = Path(sys.executable).parent
ORGANISATIONS = ["2120001355"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_responder(pki_dir: Path, url: str, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(BIN / "idp"),
                "pki",
                "ocsp-responder",
                "--dir",
                str(pki_dir),
                "--next-update-seconds",
                "3600",
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the responder exited: {log.read_text()}")
        try:
            httpx.get(f"{url}/health", timeout=1).raise_for_status()
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the responder did not start")


def measure(call: Callable[[], object], iterations: int, before: Callable[[], None]) -> list[float]:
    """Milliseconds per call; ``before`` runs untimed ahead of each call."""
    timings = []
    for _ in range(iterations):
        before()
        start = time.perf_counter()
        call()
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def summary(timings: list[float]) -> tuple[float, float, float]:
    ordered = sorted(timings)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), statistics.fmean(ordered), p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="revocation-bench-") as temporary:
        work = Path(temporary)
        url = f"http://127.0.0.1:{free_port()}"
        pki = init_test_pki(work / "pki", revocation_url=url)
        responder = start_responder(pki.directory, url, work / "responder.log")
        try:
            database = Database(f"sqlite:///{work / 'idp.sqlite3'}")
            create_schema(database.engine)
            trust = load_siths_trust(pki.trust_anchors_file, pki.intermediates_file)
            checker = RevocationChecker(RevocationPolicy(), DatabaseRevocationCache(database))
            plain = SithsValidator(trust, ORGANISATIONS)
            checked = SithsValidator(trust, ORGANISATIONS, checker)
            card = x509.load_pem_x509_certificate(pki.cards["anna"].cert.read_bytes())

            def empty_cache() -> None:
                with database.session() as session:
                    session.execute(delete(RevocationCacheEntry))

            def nothing() -> None:
                pass

            # Warm-up: imports, the HTTP connection, SQLite pages.
            for _ in range(5):
                empty_cache()
                checked.validate(card)
            sources = {
                "cold": checked.validate(card).revocation,
                "warm": checked.validate(card).revocation,
            }
            assert sources["warm"] is not None and sources["warm"].source == "cache"

            rows = {
                "no revocation": measure(lambda: plain.validate(card), args.iterations, nothing),
                "cold cache": measure(lambda: checked.validate(card), args.iterations, empty_cache),
                "warm cache": measure(lambda: checked.validate(card), args.iterations, nothing),
            }
        finally:
            responder.terminate()
            responder.wait(timeout=10)

    print(
        f"SithsValidator.validate of one card, {args.iterations} calls each, real OCSP responder "
        f"on loopback ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, Python "
        f"{sys.version.split()[0]})"
    )
    print(f"{'':<15}{'median ms':>11}{'mean ms':>11}{'p95 ms':>11}")
    figures = {}
    for label, timings in rows.items():
        median, mean, p95 = summary(timings)
        figures[label] = median
        print(f"{label:<15}{median:>11.2f}{mean:>11.2f}{p95:>11.2f}")
    floor = figures["no revocation"]
    print(
        f"cold/warm ratio (median): {figures['cold cache'] / figures['warm cache']:.1f}x; "
        f"revocation adds {figures['cold cache'] - floor:.2f} ms cold, "
        f"{figures['warm cache'] - floor:.2f} ms warm"
    )


if __name__ == "__main__":
    main()

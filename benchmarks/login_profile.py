"""Where a complete card login's CPU goes: py-spy samples an embedded node while the peer
benchmark's load client logs in, and each sample is put in one category of issue 18's profile.

    .venv/bin/python benchmarks/login_profile.py                      # this tree (~1 min)
    .venv/bin/python benchmarks/login_profile.py --baseline 3b6fb49   # and a commit's idp/

One node with one process (so both of a login's requests are in the sampled process), SQLite,
the OCSP cache warm, ``--concurrency`` browsers of ``benchmarks/browser.py`` logging in for
``--seconds``; py-spy samples the node's threads while they run on a CPU (its default: a
thread waiting in epoll or a lock is not sampled), native code included, 250 times a second.
The node's own CPU per login comes from /proc (``harness.tree_cpu``), as in ``peers.py``.

A sample goes to the category of the frame nearest its leaf that names one (:data:`CATEGORIES`,
first match wins), so a library's work counts where it is done: a statement's SQLAlchemy work
under the login's use case is SQLAlchemy's, uvloop's native TLS under the loop is the loop's.

``--baseline REV`` profiles a second node, started with ``PYTHONPATH`` at ``idp/`` as commit
REV had it (``git archive``), right after this tree's, and prints both side by side.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import harness
import peers

ROOT = Path(__file__).resolve().parent.parent
PY_SPY = Path(sys.executable).parent / "py-spy"
RATE = 250

# (category, substrings of a py-spy frame "function (path:line)"), in the order they are tried.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "building and signing the Response",
        ("idp/saml/response.py", "idp/saml/xmlsec_backend.py", "idp/saml/encryption.py"),
    ),
    (
        "parsing and verifying the AuthnRequest",
        ("idp/saml/authn_request.py", "idp/saml/bindings.py", "parse_authn_request"),
    ),
    ("revocation", ("idp/siths/revocation", "idp/store/revocation_cache.py")),
    ("chain validation", ("idp/siths/validation.py",)),
    ("SQLAlchemy + SQLite", ("sqlalchemy/", "sqlite3")),
    ("Jinja2", ("jinja2/", "markupsafe/", ".html:")),
    ("TLS: the card listener (pyOpenSSL)", ("OpenSSL/", "_CardTlsProtocol")),
    ("TLS: the main port (ssl)", ("(ssl.py:", "sslproto")),
    ("audit and log lines", ("idp/audit.py", "(logging/", "idp/server/logging_setup.py")),
    ("the card listener's HTTP", ("idp/server/cert_listener.py", "idp/server/http_limits.py")),
    (
        "web framework and event loop",
        ("uvicorn/", "starlette/", "fastapi/", "anyio/", "asyncio/", "uvloop/", "httptools/"),
    ),
)
OTHER = "the rest (the login's own code, the standard library)"


def categorise(raw_lines: Iterable[str]) -> collections.Counter[str]:
    """Samples per category from py-spy's ``--format raw`` output (``frame;frame;… count``,
    root first)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw_lines:
        stack, _, number = line.rstrip("\n").rpartition(" ")
        if not stack or not number.isdigit():
            continue
        counts[_category(stack.split(";"))] += int(number)
    return counts


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, markers in CATEGORIES:
            if any(marker in frame for marker in markers):
                return name
    return OTHER


def profile_node(
    work: Path, lab: harness.Lab, args: argparse.Namespace
) -> tuple[float, float, collections.Counter[str]]:
    """(logins/s, the node's CPU ms per login, samples per category) of one node from what
    ``PYTHONPATH`` now says."""
    deployment = harness.embedded(lab, work, workers=1)
    try:
        side = peers.our_side("embedded", deployment, work)
        side.nginx_static = None  # no floors here: only the probe's login
        common = {**peers.browsers_of(lab), "floor_nginx_cpu": {}}
        peers.probe(side, lab.pki.tls_ca_cert, common["cards"][0], common["hsa_ids"][0])
        peers.measure(side, "login", concurrency=2, seconds=2, warmup=0.5, **common)
        raw = work / "py-spy.txt"
        spy = subprocess.Popen(
            [str(PY_SPY), "record", "--subprocesses", "--rate", str(RATE), "--format", "raw",
             "--output", str(raw), "--duration", str(int(args.seconds + args.warmup + 1)),
             "--pid", str(deployment.processes[0].pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        run = peers.measure(
            side, "login", concurrency=args.concurrency, seconds=args.seconds,
            warmup=args.warmup, **common,
        )  # fmt: skip
        _, problem = spy.communicate(timeout=args.seconds + args.warmup + 60)
        if spy.returncode != 0 or not raw.exists():
            raise RuntimeError(f"py-spy failed: {problem.decode(errors='replace').strip()}")
        if run.failed:
            raise RuntimeError(f"{run.failed} logins failed: {run.latencies.errors[:3]}")
        with raw.open() as lines:
            return run.rate, run.server_ms, categorise(lines)
    finally:
        deployment.stop()


def baseline_package(revision: str, into: Path) -> Path:
    """``idp/`` as ``revision`` had it, unpacked under ``into``: a ``PYTHONPATH`` for a node."""
    into.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "idp"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


@contextlib.contextmanager
def _python_path(directory: Path) -> Iterator[None]:
    """Nodes started inside import ``idp`` from ``directory`` (harness.py passes the
    environment on)."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(directory)
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def report(columns: list[tuple[str, float, float, collections.Counter[str]]]) -> None:
    print(
        "| category | " + " | ".join(f"{name}: share | ms per login" for name, *_ in columns) + " |"
    )
    print("|---|" + "---|---|" * len(columns))
    for category in [name for name, _ in CATEGORIES] + [OTHER]:
        cells = []
        for _name, _rate, server_ms, counts in columns:
            share = counts[category] / max(1, sum(counts.values()))
            cells.append(f"{100 * share:.1f}% | {share * server_ms:.2f}")
        print(f"| {category} | " + " | ".join(cells) + " |")
    cells = [
        f"{sum(counts.values())} samples, {rate:.1f} logins/s | {server_ms:.2f}"
        for _n, rate, server_ms, counts in columns
    ]
    print("| the node's CPU per login (/proc) | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--baseline", metavar="REV", help="also profile idp/ as commit REV had it")
    args = parser.parse_args()
    if not PY_SPY.exists():
        sys.exit(f"{PY_SPY} is missing: `make venv` installs py-spy (the test extra)")
    columns = []
    with harness.workspace() as work:
        lab = harness.make_lab(work / "lab")
        try:
            rate, server_ms, counts = profile_node(work / "this-tree", lab, args)
            columns.append(("this tree", rate, server_ms, counts))
            if args.baseline:
                package = baseline_package(args.baseline, work / "baseline-package")
                with _python_path(package):
                    rate, server_ms, counts = profile_node(work / "baseline", lab, args)
                columns.append((args.baseline, rate, server_ms, counts))
        finally:
            lab.stop()
    shape = f"C = {args.concurrency}, {args.seconds:g} s, py-spy at {RATE} Hz"
    print(f"\nOne node, 1 process, SQLite; {shape}")
    report(columns)


if __name__ == "__main__":
    main()

"""Logins and cross-device orders through nginx with two nodes on PostgreSQL, side by side with
the embedded single process on SQLite, in one run.

    .venv/bin/python benchmarks/cluster.py [--seconds 20] [--concurrency 8] [--orders 500]
        [--workers 2]

The same load as benchmarks/logins.py (complete card logins, new browser each) and
benchmarks/orders.py (orders waiting at once, collect once a second, then signed), first
against the embedded deployment (the baseline: one node, ``--workers`` worker processes), then
against nginx → two ``idp serve --behind-proxy`` nodes (one process each) → PostgreSQL
(durable: fsync on). Both deployments share one
test PKI and OCSP responder, and only one runs at a time.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
import logins
import orders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--wait", type=float, default=15.0)
    parser.add_argument("--sign-rate", type=float, default=50.0)
    harness.add_workers_option(parser)
    args = parser.parse_args()
    embedded = functools.partial(harness.embedded, workers=args.workers)
    with harness.workspace() as work:
        print(f"issuing {args.orders} cards …", flush=True)
        lab = harness.make_lab(work / "lab", order_people=args.orders)
        login_columns: list[tuple[str, logins.Figures]] = []
        order_columns: list[tuple[str, orders.OrderFigures]] = []
        verified: list[str] = []
        try:
            for label, make in (("embedded", embedded), ("scaled", harness.scaled)):
                deployment = make(lab, work / label)
                try:
                    harness.header(f"{label}:", [deployment])
                    logins.measure(deployment, "card", seconds=2, concurrency=2)  # warm-up
                    figures = logins.measure(
                        deployment, "card", seconds=args.seconds, concurrency=args.concurrency
                    )
                    login_columns.append((deployment.name, figures))
                    ok, checked = harness.verify_sample(deployment, figures.samples)
                    order_figures = orders.run_orders(
                        deployment,
                        orders=args.orders,
                        wait_seconds=args.wait,
                        sign_rate=args.sign_rate,
                    )
                    order_columns.append((deployment.name, order_figures))
                    ok_orders, checked_orders = harness.verify_sample(
                        deployment, order_figures.samples
                    )
                    verified.append(
                        f"{deployment.name}: login Responses {ok}/{checked}, "
                        f"order Responses {ok_orders}/{checked_orders}"
                    )
                finally:
                    deployment.stop()
        finally:
            lab.stop()
    logins.report(
        f"Complete card logins, {args.concurrency} browsers at once, {args.seconds:.0f} s",
        login_columns,
    )
    print(f"\n{args.orders} cross-device orders, collect once a second, signed at "
          f"{args.sign_rate:.0f}/s after {args.wait:.0f} s")  # fmt: skip
    orders.report(order_columns)
    print("\nResponses verified in full by the SP (samples):")
    for line in verified:
        print(f"  {line}")
    print(f"load average after: {harness.load_average()}")


if __name__ == "__main__":
    main()

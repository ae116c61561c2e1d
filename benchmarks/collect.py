"""CPU per cross-device collect, in-process: what one poll of the QR page costs the IdP.

    .venv/bin/python benchmarks/collect.py [--orders 500] [--polls 3000]

``orders.py`` measures collect latency with 500 browsers on the same 2 cores, which depends on
everything else the machine runs; this measures the IdP's own CPU time per collect, which does
not. The IdP app (``create_app``, every middleware) runs in this process on SQLite; ``--orders``
logins wait for the app, each with an order and its browser's cookie; their collects are
called round robin through the ASGI interface (httpx's ASGITransport: no TLS, no uvicorn),
and ``time.process_time`` per collect is reported, beside the parts measured alone: the
database work (``waiting_for_app``) and drawing the QR code (``qr_svg``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
import httpx
from statements import start_node

from idp.app import create_app
from idp.config import Settings
from idp.login.pending import BROWSER_COOKIE, create_pending_login, new_token
from idp.methods.other_device.qr import qr_content, qr_svg
from idp.methods.other_device.waiting import waiting_for_app


def make_orders(app, count: int) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """``count`` logins waiting for the app, each with its order: (reference, browser)."""
    database = app.state.services.database
    made = []
    for _ in range(count):
        browser = new_token()
        with database.session() as session:
            pending = create_pending_login(
                session, browser_token=browser, protocol="saml",
                protocol_state={"request_id": "id"}, client_id="https://sp.example.test/metadata",
                client_name="Treserva", force_authn=False, ttl_seconds=3600,
            )  # fmt: skip
            reference = pending.id
        waiting_for_app(database, reference, browser, start_new=False)
        made.append((reference, browser))
    return made


async def collect_cpu(app, orders: list[tuple[str, str]], polls: int) -> list[float]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app)
    host = Settings().base_url
    times = []
    async with httpx.AsyncClient(transport=transport, base_url=host) as client:
        for number in range(polls):
            reference, browser = orders[number % len(orders)]
            started = time.process_time()
            answer = await client.get(
                "/login/other-device/collect",
                params={"ref": reference},
                headers={"Cookie": f"{BROWSER_COOKIE}={browser}"},
            )
            times.append(time.process_time() - started)
            if answer.status_code != 200 or answer.json()["status"] != "pending":
                raise SystemExit(f"collect failed: {answer.status_code} {answer.text[:200]}")
    return times


def per_call(function, calls: int) -> float:  # type: ignore[no-untyped-def]
    started = time.process_time()
    for number in range(calls):
        function(number)
    return (time.process_time() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--polls", type=int, default=3000)
    args = parser.parse_args()
    print(f"load average before: {harness.load_average()}")
    with harness.workspace() as work:
        lab = harness.make_lab(work / "lab")
        try:
            start_node(work / "node", lab, None)
            app = create_app(Settings())
            orders = make_orders(app, args.orders)
            asyncio.run(collect_cpu(app, orders, min(200, args.polls)))  # warm-up
            times = asyncio.run(collect_cpu(app, orders, args.polls))
            database = app.state.services.database
            database_alone = per_call(
                lambda n: waiting_for_app(database, *orders[n % len(orders)], start_new=False),
                args.polls,
            )
            qr_alone = per_call(lambda n: qr_svg(qr_content("A" * 32, "b" * 64, n)), args.polls)
        finally:
            lab.stop()
    times.sort()
    print(f"{args.polls} collects of {args.orders} waiting orders, CPU per collect (in-process)")
    print(f"  whole collect through the app: median {statistics.median(times) * 1e3:.2f} ms, "
          f"mean {statistics.fmean(times) * 1e3:.2f} ms, "
          f"p99 {harness.percentile(times, 0.99) * 1e3:.2f} ms")  # fmt: skip
    print(f"  of which the database (waiting_for_app), alone: {database_alone * 1e3:.2f} ms")
    print(f"  of which the QR code (qr_svg), alone: {qr_alone * 1e3:.2f} ms")
    print(f"load average after: {harness.load_average()}")


if __name__ == "__main__":
    main()

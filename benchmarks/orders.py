"""500 cross-device orders waiting at once, each browser polling ``collect`` every second.

    .venv/bin/python benchmarks/orders.py [--orders 500] [--wait 15] [--sign-rate 50]
        [--workers 2] [--scaled]

Each of ``--orders`` people has a card of their own (an EC key and a certificate from the test
HSA-id CA, a directory entry each) and a browser of their own (cookie jar, TLS connection).
Every browser starts a login at the SP and chooses "SITHS eID på annan enhet"; then all of them
poll ``/login/other-device/collect`` as the QR page's script does: one second after each
answer (each browser at its own phase of the second). After ``--wait`` seconds with every
order waiting, the SITHS eID app (in-process signatures, the API over HTTPS) scans each order's
autostart token and signs, at ``--sign-rate`` orders a second, while the polling goes on. A
browser whose collect says ``complete`` follows ``next`` to the SAML Response.

Figures: collect latency p50/p99/max while all orders wait and while they are being signed;
side by side with the baseline of the same run, one order polled alone (ten times a second).
An order is **lost** if the app signed it (``/sign`` said complete) but its browser never got to
the Response (60 s after the last signature), and **crossed** if the Response its browser gets
is not for its own request and its own HSA-ID. Orders the app could not sign (expired while
the IdP was overloaded) are counted apart. A sample of Responses is verified in full by the SP
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import random
import resource
import ssl
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
import httpx
import uvloop
from cryptography.hazmat.primitives import serialization

from siths_testkit.app_simulator.protocol import API_PREFIX, ScanResult, Submission
from siths_testkit.login_driver import PemCard, parse_page

FINISH_TIMEOUT_SECONDS = 60.0


@dataclass
class Browser:
    hsa_id: str
    login_url: str
    request_id: str
    client: httpx.AsyncClient
    reference: str = ""
    auto_start_token: str = ""
    complete: bool = False
    # The app's /sign answered: the order is complete in the IdP's database.
    signed: bool = False
    crossed: str = ""
    response: str = ""
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    last_answer_at: float = 0.0
    # Collects sent again after the node closed a kept-alive connection under them: how long
    # the connection had been idle.
    retried_after_idle: list[float] = field(default_factory=list)


async def _follow(browser: Browser, base_url: str, response: httpx.Response) -> httpx.Response:
    for _ in range(10):
        if response.status_code not in (302, 303):
            return response
        location = response.headers["location"]
        response = await browser.client.get(base_url + location if location[0] == "/" else location)
    raise RuntimeError("too many redirects")


async def start_order(browser: Browser, base_url: str) -> None:
    chooser = await _follow(browser, base_url, await browser.client.get(browser.login_url))
    links = parse_page(chooser.text).links
    if "method-other-device" not in links:
        raise RuntimeError(
            f"no chooser for {browser.hsa_id}: {chooser.status_code} {chooser.url} "
            f"{chooser.headers.get('x-idp-reason', '')} {chooser.text[:300]!r}"
        )
    href = links["method-other-device"]
    page = await browser.client.get(base_url + href)
    autostart = parse_page(page.text).links["autostart"]
    browser.auto_start_token = urllib.parse.parse_qs(urllib.parse.urlsplit(autostart).query)[
        "autostarttoken"
    ][0]
    browser.reference = urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)["ref"][0]
    browser.last_answer_at = time.monotonic()


async def poll(
    browser: Browser, base_url: str, phase: dict[str, str], stop: asyncio.Event, interval: float
) -> None:
    """Collect until complete (then fetch the Response) or stopped, waiting ``interval``
    seconds after each answer, as the QR page's script does (idp/web/static/other_device.js)."""
    await asyncio.sleep(random.uniform(0, interval))
    while not stop.is_set():
        started = time.perf_counter()
        url = f"{base_url}/login/other-device/collect?ref={browser.reference}"
        try:
            try:
                answer = await browser.client.get(url)
            except httpx.RemoteProtocolError:
                # The node closed this kept-alive connection as the request went out (idle
                # past its keep-alive timeout while the load generator was busy). A browser
                # sends an idempotent GET again on a new connection; so does this one, and
                # the retry is counted, with how long the connection had been idle, and its
                # time included in the latency.
                browser.retried_after_idle.append(time.monotonic() - browser.last_answer_at)
                answer = await browser.client.get(url)
            browser.last_answer_at = time.monotonic()
            view = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            browser.errors.append(f"collect: {type(exc).__name__}: {exc}"[:200])
            view = {}
        browser.latencies.setdefault(phase["now"], []).append(time.perf_counter() - started)
        if view.get("status") == "complete":
            await finish(browser, base_url, view["next"])
            return
        if view.get("status") == "failed":
            browser.errors.append(f"order failed: {view.get('hintCode')}")
            return
        await asyncio.sleep(interval)


async def finish(browser: Browser, base_url: str, next_path: str) -> None:
    final = await _follow(browser, base_url, await browser.client.get(base_url + next_path))
    forms = parse_page(final.text).forms
    if not forms or "SAMLResponse" not in forms[0][1]:
        browser.errors.append(f"no Response: HTTP {final.status_code}")
        return
    browser.response = forms[0][1]["SAMLResponse"]
    in_response_to, status, hsa_id = harness.response_facts(browser.response)
    browser.complete = True
    if (
        in_response_to != browser.request_id
        or hsa_id != browser.hsa_id
        or status != harness.SUCCESS
    ):
        browser.crossed = f"{in_response_to}/{hsa_id}/{status}"


async def sign(
    base_url: str,
    context: ssl.SSLContext,
    browser: Browser,
    card: PemCard,
    failures: list[str],
) -> None:
    """One phone: its own connection, scan the autostart token, sign, send."""
    try:
        async with httpx.AsyncClient(base_url=base_url, verify=context, timeout=120) as app:
            scanned = await app.post(
                f"{API_PREFIX}/scan", json={"autoStartToken": browser.auto_start_token}
            )
            scanned.raise_for_status()
            scan = ScanResult.from_json(scanned.json())
            algorithm, signature = card.sign(scan.data_to_sign)
            pem = card.certificate().public_bytes(serialization.Encoding.PEM).decode()
            body = Submission(algorithm, signature, (pem,)).to_json(scan)
            signed = await app.post(f"{API_PREFIX}/sign", json=body)
            signed.raise_for_status()
            browser.signed = signed.json().get("status") == "complete"
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        failures.append(f"app: {type(exc).__name__}: {exc}"[:200])


@dataclass
class OrderFigures:
    created_seconds: float
    waiting: list[float]
    signing: list[float]
    baseline: list[float]
    orders: int
    complete: int
    # Signed by the app, yet its browser never got to the Response: really lost.
    lost: int
    crossed: int
    # Never signed: the app was refused (e.g. the order expired while the IdP was overloaded).
    unsigned: int
    app_failures: list[str]
    errors: list[str]
    retried_after_idle: list[float]
    samples: list[tuple[str, str, str]]
    server_cpu: float
    seconds: float
    # The load client's own CPU (this process, all threads) over the whole run.
    client_cpu: float = 0.0


async def run_orders_async(
    deployment: harness.Deployment,
    *,
    orders: int,
    wait_seconds: float,
    sign_rate: float,
) -> OrderFigures:
    context = ssl.create_default_context(cafile=str(deployment.ca_file))
    base_url = deployment.base_url
    people = list(deployment.lab.order_cards)[:orders]
    if len(people) < orders:
        raise SystemExit(f"the lab has cards for {len(people)} people, not {orders}")
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    browsers = []
    for hsa_id in people:
        login_url, request_id = deployment.sp.login_url()
        client = httpx.AsyncClient(verify=context, timeout=60, limits=limits)
        browsers.append(Browser(hsa_id, login_url, request_id, client))
    server_before = deployment.server_cpu()
    began = time.monotonic()

    # Baseline: one order alone, collect ten times a second for five seconds.
    alone = browsers[0]
    await start_order(alone, base_url)
    baseline: list[float] = []
    for _ in range(50):
        started = time.perf_counter()
        (
            await alone.client.get(f"{base_url}/login/other-device/collect?ref={alone.reference}")
        ).raise_for_status()
        baseline.append(time.perf_counter() - started)
        await asyncio.sleep(0.1)

    created_at = time.monotonic()
    gate = asyncio.Semaphore(16)

    async def create(browser: Browser) -> None:
        async with gate:
            if browser is not alone:
                await start_order(browser, base_url)

    await asyncio.gather(*(create(browser) for browser in browsers))
    created_seconds = time.monotonic() - created_at
    # The 500 browsers' connections and state live to the end: out of the collector's sight,
    # so that a full collection in this one load process does not stall every poll at once
    # (as the IdP does with what it builds at start-up, idp.server.run).
    gc.freeze()

    phase = {"now": "waiting"}
    stop = asyncio.Event()
    pollers = [asyncio.create_task(poll(b, base_url, phase, stop, 1.0)) for b in browsers]
    await asyncio.sleep(wait_seconds)
    phase["now"] = "signing"
    app_failures: list[str] = []
    signers = []
    order = list(browsers)
    random.shuffle(order)
    for browser in order:
        card = PemCard(*deployment.lab.order_cards[browser.hsa_id])
        signers.append(asyncio.create_task(sign(base_url, context, browser, card, app_failures)))
        await asyncio.sleep(1.0 / sign_rate)
    await asyncio.gather(*signers)
    try:
        await asyncio.wait_for(asyncio.gather(*pollers), FINISH_TIMEOUT_SECONDS)
    except TimeoutError:
        stop.set()
        await asyncio.gather(*pollers, return_exceptions=True)
    seconds = time.monotonic() - began
    server_cpu = deployment.server_cpu() - server_before
    for browser in browsers:
        await browser.client.aclose()
    complete = [b for b in browsers if b.complete]
    return OrderFigures(
        created_seconds=created_seconds,
        waiting=[v for b in browsers for v in b.latencies.get("waiting", [])],
        signing=[v for b in browsers for v in b.latencies.get("signing", [])],
        baseline=baseline,
        orders=len(browsers),
        complete=len(complete),
        lost=sum(1 for b in browsers if b.signed and not b.complete),
        crossed=sum(1 for b in complete if b.crossed),
        unsigned=sum(1 for b in browsers if not b.signed),
        app_failures=app_failures,
        errors=[e for b in browsers for e in b.errors],
        retried_after_idle=[idle for b in browsers for idle in b.retried_after_idle],
        samples=[(b.response, b.request_id, b.hsa_id) for b in complete],
        server_cpu=server_cpu,
        seconds=seconds,
    )


def run_orders(deployment: harness.Deployment, **kwargs: float) -> OrderFigures:
    # uvloop: the 500 browsers share one event loop and the machine's two cores with the IdP;
    # asyncio's own loop made the client's scheduling delay a visible part of the collect
    # latency it measures.
    before = _own_cpu_seconds()
    figures = uvloop.run(run_orders_async(deployment, **kwargs))  # type: ignore[arg-type]
    return dataclasses.replace(figures, client_cpu=_own_cpu_seconds() - before)


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _retries(idle_seconds: list[float]) -> str:
    if not idle_seconds:
        return "0"
    return f"{len(idle_seconds)} (idle {min(idle_seconds):.1f}–{max(idle_seconds):.1f} s)"


def report(columns: list[tuple[str, OrderFigures]]) -> None:
    width = max(22, *(len(name) + 2 for name, _ in columns))
    print(" " * 40 + "".join(f"{name:>{width}}" for name, _ in columns))

    def row(label: str, values: list[str]) -> None:
        print(f"{label:<40}" + "".join(f"{value:>{width}}" for value in values))

    def ms(values: list[float], fraction: float) -> str:
        return f"{harness.percentile(values, fraction) * 1000:.1f} ms"

    row("orders waiting at once", [str(f.orders) for _, f in columns])
    row("time to create them", [f"{f.created_seconds:.1f} s" for _, f in columns])
    row("baseline: collect, 1 order, p50", [ms(f.baseline, 0.5) for _, f in columns])
    row("baseline: collect, 1 order, p99", [ms(f.baseline, 0.99) for _, f in columns])
    row("all waiting: collects", [str(len(f.waiting)) for _, f in columns])
    row("all waiting: collect p50", [ms(f.waiting, 0.5) for _, f in columns])
    row("all waiting: collect p99", [ms(f.waiting, 0.99) for _, f in columns])
    row("all waiting: collect max", [ms(f.waiting, 1.0) for _, f in columns])
    row("while signing: collect p50", [ms(f.signing, 0.5) for _, f in columns])
    row("while signing: collect p99", [ms(f.signing, 0.99) for _, f in columns])
    row(
        "completed / lost / crossed", [f"{f.complete} / {f.lost} / {f.crossed}" for _, f in columns]
    )
    row("not signed in time (app refused)", [str(f.unsigned) for _, f in columns])
    row("app or browser errors", [str(len(f.app_failures) + len(f.errors)) for _, f in columns])
    row(
        "collects sent again (closed keep-alive)",
        [_retries(f.retried_after_idle) for _, f in columns],
    )
    row("server CPU (cores busy)", [f"{f.server_cpu / f.seconds:.2f}" for _, f in columns])
    row("load client CPU (cores busy)", [f"{f.client_cpu / f.seconds:.2f}" for _, f in columns])
    for name, figures in columns:
        for error in sorted(set(figures.app_failures + figures.errors))[:5]:
            print(f"  {name}: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--wait", type=float, default=15.0, help="seconds all orders wait")
    parser.add_argument("--sign-rate", type=float, default=50.0, help="orders signed a second")
    parser.add_argument("--scaled", action="store_true", help="nginx + 2 nodes + PostgreSQL")
    harness.add_workers_option(parser)
    args = parser.parse_args()
    with harness.workspace() as work:
        print(f"issuing {args.orders} cards …", flush=True)
        lab = harness.make_lab(work / "lab", order_people=args.orders)
        try:
            deployment = harness.deploy(lab, work / "deployment", args)
            try:
                harness.header("Cross-device orders polled once a second", [deployment])
                figures = run_orders(
                    deployment, orders=args.orders, wait_seconds=args.wait, sign_rate=args.sign_rate
                )
                print()
                report([(deployment.name, figures)])
                verified, checked = harness.verify_sample(deployment, figures.samples)
                print(f"Responses verified in full by the SP (sample): {verified}/{checked}")
                print(f"load average after: {harness.load_average()}")
            finally:
                deployment.stop()
        finally:
            lab.stop()


if __name__ == "__main__":
    main()

"""The scaled deployment, for real: PostgreSQL, nginx and two IdP nodes on loopback.

PostgreSQL (a throwaway cluster, ``initdb`` in a temporary directory) and nginx (running the shipped
``docker/nginx/idp.conf.template``) are the Debian programs; the nodes are ``idp serve
--behind-proxy`` processes (built by :mod:`tests.helpers.multinode_support`). The browser talks only
to nginx; the SITHS eID app is sometimes pointed at one node directly, to decide which node
completes an order. Which node served a step is read from the nodes' JSON logs by the request id
nginx put on it.

The last test kills a node with SIGKILL in the middle of a bounded load loop.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from idp.db import Base, Database, head_revision, import_model_modules
from idp.ops.sweeper import sweep_expired
from siths_testkit.app_simulator import SithsEidApp
from siths_testkit.local_cluster import ClusterError
from siths_testkit.login_driver import (
    LoginFailed,
    LoginResult,
    PemCard,
    card_login,
    collect,
    finish_other_device_login,
    sso_login,
    start_other_device_login,
)
from siths_testkit.pki import TestPki
from tests.helpers.card_defects import FINDINGS, Defect
from tests.helpers.flows import login_with_card, started_login
from tests.helpers.multinode_support import Cluster, running_cluster
from tests.helpers.support import (
    RunningServer,
    assert_no_success_response,
    parse_page,
    reason_code,
    tls_context,
)

SAMBI_HSA_ID = "http://sambi.se/attributes/1/employeeHsaId"
CARDS = {"anna": "SE2120001355-E0001", "bertil": "SE2120001355-E0002"}
# The kill test: a bounded loop of logins by a few concurrent browsers.
LOAD_LOGINS = 40
LOAD_WORKERS = 4
KILL_AFTER_COMPLETED = 10
LOAD_DEADLINE_SECONDS = 150


@pytest.fixture(scope="module")
def cluster(
    test_pki: TestPki, ocsp_responder: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    try:
        with running_cluster(test_pki, tmp_path_factory.mktemp("multinode")) as running:
            yield running
    except ClusterError as exc:
        pytest.fail(f"PostgreSQL or nginx: {exc}")


# --- the shared database ----------------------------------------------------------------------


def test_nodes_are_ready_on_one_migrated_database(cluster: Cluster) -> None:
    for node in cluster.nodes.values():
        ready = httpx.get(f"{node.url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert checks["database"] == {
            "ok": True,
            "backend": "postgresql",
            "schema": head_revision(),
        }
        assert checks["keys"]["ok"] and checks["metadata"]["ok"]
    assert cluster.query("SELECT version_num FROM alembic_version") == [(head_revision(),)]
    # The migrations make on PostgreSQL exactly what the models describe.
    import_model_modules()
    database = Database(cluster.postgres.url)
    try:
        with database.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        database.dispose()


def test_sweeper_deletes_expired_rows_on_postgresql(cluster: Cluster) -> None:
    cluster.query(
        "INSERT INTO seen_messages (issuer, message_id, expires_at) VALUES "
        "('https://sweep.test', 'old', now() - interval '2 hours'), "
        "('https://sweep.test', 'young', now() + interval '1 hour') RETURNING id"
    )
    database = Database(cluster.postgres.url)
    try:
        deleted = sweep_expired(database, grace=dt.timedelta(hours=1))
    finally:
        database.dispose()
    # The nodes sweep on their own schedule too and may have taken the old row first: what
    # counts is that it is gone and the young one is not.
    assert isinstance(deleted, dict)
    left = cluster.query("SELECT message_id FROM seen_messages WHERE issuer = 'https://sweep.test'")
    assert left == [("young",)]


# --- logins across nodes ----------------------------------------------------------------------


def test_card_login_steps_land_on_both_nodes_and_complete(cluster: Cluster) -> None:
    for card, hsa_id in CARDS.items():
        login_url, request_id = cluster.sp.login_url()
        with cluster.browser(card) as client:
            result = card_login(client, login_url, cluster.base_url)
            served = [cluster.served_by(step.request_id) for step in result.steps]
            assert None not in served, result.steps
            # nginx balances each request: one login's steps are served by both nodes.
            assert set(served) == {"a", "b"}, served
            assert cluster.verify(result, request_id)[SAMBI_HSA_ID] == [hsa_id]
            # The SSO session one node started is honoured by whichever node comes next.
            for _ in range(2):
                again_url, again_id = cluster.sp.login_url()
                again = sso_login(client, again_url, cluster.base_url)
                assert cluster.verify(again, again_id)[SAMBI_HSA_ID] == [hsa_id]


def test_cross_device_order_started_on_one_node_is_completed_on_the_other(
    cluster: Cluster,
) -> None:
    card = PemCard(cluster.pki.cards["bertil"].cert, cluster.pki.cards["bertil"].key)
    login_url, request_id = cluster.sp.login_url()
    with cluster.browser() as client:
        login = start_other_device_login(client, login_url, cluster.base_url)
        started_on = cluster.served_by(login.browser.steps[-1].request_id)
        assert started_on in ("a", "b")
        other = cluster.nodes["b" if started_on == "a" else "a"]
        # The app talks to the node that did not create the order.
        with SithsEidApp(other.url, None, card) as app:
            scan = app.scan_auto_start(login.auto_start_token)
            assert app.sign(scan).state.status == "complete"
        view, _elapsed = collect(login)
        result = finish_other_device_login(login, view)
    assert cluster.verify(result, request_id)[SAMBI_HSA_ID] == [CARDS["bertil"]]
    rows = cluster.query(
        "SELECT outcome FROM audit_events WHERE event = 'login.method' AND detail LIKE %s",
        f"%{scan.order_ref}%",
    )
    assert rows == [("success",)]


# --- the certificate header -------------------------------------------------------------------


def _pending_login(cluster: Cluster, client: httpx.Client) -> str:
    login_url, _ = cluster.sp.login_url()
    response = client.get(login_url)
    while response.status_code in (302, 303):
        location = response.headers["location"]
        response = client.get(cluster.base_url + location if location[0] == "/" else location)
    href = parse_page(response.text).links["method-this-device"]
    return urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)["ref"][0]


def _browser_cookie(response: httpx.Response) -> str:
    """The ``Cookie`` header a browser would send back after ``response`` (the nodes speak
    plain HTTP, where a client keeps no ``Secure`` cookie by itself)."""
    return "; ".join(value.split(";", 1)[0] for value in response.headers.get_list("set-cookie"))


def test_a_proxy_retry_of_an_sso_request_gets_the_login_it_started(cluster: Cluster) -> None:
    """nginx retries a GET at the other node when the first failed before answering
    (``proxy_next_upstream error timeout``): the retry carries the same X-Request-ID and, from a
    new browser, no cookie. It gets the login the first attempt started, handed over to its own
    new cookie. The same request under another id, or with that id from an address that is not
    a trusted proxy, is a replay; the first attempt's cookie no longer opens the login."""
    login_url, _ = cluster.sp.login_url()
    path = "/saml/sso/redirect?" + urllib.parse.urlsplit(login_url).query
    delivery = "retry-" + os.urandom(8).hex()
    a, b = cluster.nodes["a"].url, cluster.nodes["b"].url
    with httpx.Client() as proxy:
        lost = proxy.get(b + path, headers={"X-Request-ID": delivery})
        reference = started_login(lost)
        assert reference, lost.text[:500]
        other_id = proxy.get(a + path, headers={"X-Request-ID": "another-" + delivery})
        assert reason_code(other_id.text) == "replayed_request"
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as direct:
            untrusted = direct.get(a + path, headers={"X-Request-ID": delivery})
        assert reason_code(untrusted.text) == "replayed_request"
        retried = proxy.get(a + path, headers={"X-Request-ID": delivery})
        assert started_login(retried) == reference, retried.text[:500]
        chooser = proxy.get(
            f"{a}/login?ref={reference}", headers={"Cookie": _browser_cookie(retried)}
        )
        assert started_login(chooser) == reference, chooser.text[:500]
        first = proxy.get(f"{a}/login?ref={reference}", headers={"Cookie": _browser_cookie(lost)})
        assert reason_code(first.text) == "other_browser"


def test_certificate_header_is_believed_only_from_nginx(cluster: Cluster) -> None:
    forged = urllib.parse.quote(cluster.pki.cards["anna"].cert.read_text())
    with cluster.browser() as client:
        ref = _pending_login(cluster, client)
        cookies = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        # Straight to a node from an address that is not a trusted proxy: ignored, audited.
        direct = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        with direct:
            refused = direct.get(
                f"{cluster.nodes['a'].url}/cert-login?ref={ref}",
                headers={"X-SSL-Client-Cert": forged, "Cookie": cookies},
            )
        assert refused.status_code != 303 and "no_certificate" in refused.text
        audit = cluster.query(
            "SELECT detail FROM audit_events WHERE event = 'proxy.untrusted_header'"
        )
        assert ("certificate header from 127.0.0.2",) in audit
        # Through nginx, a client's own header never reaches a node: not on the main origin,
        # and on the certificate origin it is replaced by the (absent) TLS certificate.
        for origin in (cluster.base_url, cluster.cert_login_url):
            answer = client.get(
                f"{origin}/cert-login?ref={ref}", headers={"X-SSL-Client-Cert": forged}
            )
            assert answer.status_code != 303 and "no_certificate" in answer.text, origin
        # The login is still pending: none of that authenticated anybody.
        state = cluster.query("SELECT state FROM pending_logins WHERE id = %s", ref)
        assert state == [("pending",)]


def _refusals(cluster: Cluster, reason: str) -> int:
    return cluster.query(
        "SELECT count(*) FROM audit_events WHERE event = 'login.method' AND reason = %s", reason
    )[0][0]


@pytest.mark.parametrize("defect", FINDINGS, ids=lambda defect: defect.name)
def test_weak_key_or_wrong_profile_card_is_refused_behind_the_proxy(
    cluster: Cluster, tmp_path: Path, defect: Defect
) -> None:
    """Issue 14, findings 2 and 3, in proxy mode: a node applies the same validator to the
    certificate nginx forwards as the card listener does to its own handshake."""
    card = defect.issue(cluster.pki, tmp_path)
    before = _refusals(cluster, defect.reason)
    with cluster.browser() as client:
        ref = _pending_login(cluster, client)
        cookies = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        # What nginx sends a node for this card: its escaped PEM, from the trusted address.
        answer = httpx.get(
            f"{cluster.nodes['a'].url}/cert-login?ref={ref}",
            headers={
                "X-SSL-Client-Cert": urllib.parse.quote(card.cert.read_text()),
                "Cookie": cookies,
            },
        )
    assert reason_code(answer.text) == defect.reason, answer.text[:2000]
    assert answer.status_code == 403 and "location" not in answer.headers
    assert cluster.query("SELECT state FROM pending_logins WHERE id = %s", ref) == [("pending",)]
    assert _refusals(cluster, defect.reason) == before + 1


# TLS has no signature algorithm for a P-192 key: a client cannot present that card to nginx.
PRESENTABLE_OVER_TLS = [defect for defect in FINDINGS if defect.name != "ec_p192"]


@pytest.mark.parametrize("defect", PRESENTABLE_OVER_TLS, ids=lambda defect: defect.name)
def test_weak_key_or_wrong_profile_card_is_refused_through_nginx(
    cluster: Cluster, tmp_path: Path, defect: Defect
) -> None:
    card = defect.issue(cluster.pki, tmp_path)
    before = _refusals(cluster, defect.reason)
    login_url, _ = cluster.sp.login_url()
    context = tls_context(cluster.ca_file, card.cert, card.key, any_card_key=True)
    with httpx.Client(verify=context, timeout=30) as client:
        page = login_with_card(client, login_url, cluster.base_url)
    assert reason_code(page.text) == defect.reason, page.text[:2000]
    assert page.status_code == 403
    assert_no_success_response(page.text)
    assert _refusals(cluster, defect.reason) == before + 1


# --- operations -------------------------------------------------------------------------------


def test_metrics_per_node_and_request_ids_in_the_logs(cluster: Cluster) -> None:
    metrics = {name: httpx.get(f"{node.url}/metrics").text for name, node in cluster.nodes.items()}
    logins = [
        line
        for text in metrics.values()
        for line in text.splitlines()
        if line.startswith('idp_logins_total{method="siths-this-device",outcome="success"}')
    ]
    assert logins and sum(float(line.split()[-1]) for line in logins) >= len(CARDS)
    for text in metrics.values():
        assert "idp_orders_pending " in text
        assert "idp_http_request_duration_seconds_bucket" in text
        assert 'idp_revocation_cache_lookups_total{result="' in text
    # Not through nginx: metrics are scraped from each node.
    hidden = httpx.get(f"{cluster.base_url}/metrics", verify=tls_context(cluster.ca_file))
    assert hidden.status_code == 404
    answer = httpx.get(f"{cluster.base_url}/healthz", verify=tls_context(cluster.ca_file))
    request_id = answer.headers["x-request-id"]
    assert len(request_id) == 32  # nginx's $request_id, passed through by the node
    node = cluster.served_by(request_id)
    assert node is not None
    line = next(
        json.loads(text)
        for text in cluster.nodes[node].server.log().splitlines()
        if request_id in text
    )
    assert line["node"] == node and line["logger"] == "idp.access" and line["status"] == 200


# --- a node dies --------------------------------------------------------------------------------


@dataclass
class Attempt:
    card: str
    request_id: str
    started: float = 0.0
    finished: float = 0.0
    result: LoginResult | None = None
    error: str = ""
    cookies: httpx.Cookies | None = None


def test_node_killed_mid_load_loses_no_completed_login(cluster: Cluster) -> None:
    victim = cluster.nodes["b"]
    cards = list(CARDS)
    attempts = []
    for number in range(LOAD_LOGINS):
        login_url, request_id = cluster.sp.login_url()
        attempts.append((login_url, Attempt(cards[number % len(cards)], request_id)))
    completed = 0
    killed_at: float | None = None
    lock = threading.Lock()
    deadline = time.monotonic() + LOAD_DEADLINE_SECONDS

    def run(job: tuple[str, Attempt]) -> Attempt:
        nonlocal completed, killed_at
        login_url, attempt = job
        if time.monotonic() > deadline:
            attempt.error = "not started: deadline"
            return attempt
        attempt.started = time.monotonic()
        with cluster.browser(attempt.card) as client:
            try:
                attempt.result = card_login(client, login_url, cluster.base_url)
            except (LoginFailed, httpx.HTTPError) as exc:
                attempt.error = f"{type(exc).__name__}: {exc}"
            attempt.cookies = client.cookies
        attempt.finished = time.monotonic()
        with lock:
            if attempt.result is not None:
                completed += 1
            if completed >= KILL_AFTER_COMPLETED and killed_at is None:
                os.kill(victim.server.process.pid, signal.SIGKILL)
                killed_at = time.monotonic()
        return attempt

    with ThreadPoolExecutor(LOAD_WORKERS) as pool:
        finished = list(pool.map(run, attempts))
    assert killed_at is not None
    victim.server.process.wait(timeout=10)
    assert victim.server.process.returncode == -signal.SIGKILL

    failed = [attempt for attempt in finished if attempt.result is None]
    succeeded = [attempt for attempt in finished if attempt.result is not None]
    after = [attempt for attempt in finished if attempt.started > killed_at]
    print(  # shown when the test fails: what the loop saw
        f"{len(succeeded)} completed, {len(failed)} failed "
        f"({[attempt.error for attempt in failed]}), {len(after)} started after the kill"
    )
    # Only logins that were under way when the node died may have failed…
    for attempt in failed:
        assert attempt.started <= killed_at <= attempt.finished, attempt.error
    assert len(failed) <= LOAD_WORKERS
    # …and the rest carried on: every login started after the kill completed.
    assert after and all(attempt.result is not None for attempt in after)
    # Both nodes served before the kill; only the survivor after it.
    before_steps = {
        cluster.served_by(step.request_id)
        for attempt in succeeded
        if attempt.finished < killed_at
        for step in attempt.result.steps  # type: ignore[union-attr]
    }
    assert before_steps == {"a", "b"}

    # No completed login is lost: every Response verifies at the SP, and every one's SSO
    # session (in PostgreSQL) still lets that browser in, now through the survivor alone.
    for attempt in succeeded:
        assert attempt.result is not None
        ava = cluster.verify(attempt.result, attempt.request_id)
        assert ava[SAMBI_HSA_ID] == [CARDS[attempt.card]]
        with cluster.browser(cookies=attempt.cookies) as client:
            again_url, again_id = cluster.sp.login_url()
            again = sso_login(client, again_url, cluster.base_url)
            assert cluster.verify(again, again_id)[SAMBI_HSA_ID] == [CARDS[attempt.card]]
    assert httpx.get(f"{cluster.nodes['a'].url}/readyz", timeout=10).status_code == 200

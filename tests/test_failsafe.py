"""An exception ends as the IdP's page on a connection that stays open, logged once as JSON.

The real app (``create_app``) under real uvicorn, configured as a node behind nginx
(``idp.server.run``'s configuration: plain HTTP, keep-alive), with two routes added by the test
that fail the way a bug and a database that refuses writes fail. One keep-alive client asks
twice: nginx's upstream connections are exactly that, and a closed one would count as a failed
node. Faults of the running services (PostgreSQL down, a full disk, a killed node, OCSP down)
are in ``tests/test_faults.py``.
"""

from __future__ import annotations

import asyncio
import errno
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select, text

from idp.app import create_app
from idp.config import Settings
from idp.db import Database, create_schema
from idp.server.cert_listener import CertificateListener
from idp.server.logging_setup import JsonFormatter
from idp.server.run import _uvicorn_config
from idp.store.models import AuditEvent
from siths_testkit.pki import TestPki
from tests.helpers.refusals import assert_refusal_page
from tests.helpers.support import free_port, reason_code, tls_context


@dataclass
class Served:
    base_url: str
    database: Database
    log: io.StringIO
    write_attempts: list[int] = field(default_factory=list)
    peers: list[int] = field(default_factory=list)

    def log_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]


@pytest.fixture
def served(test_pki: TestPki, tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    settings = Settings(
        var_dir=tmp_path / "var",
        pki_dir=test_pki.directory,
        sp_metadata_dir=tmp_path / "sp-metadata",
        host="127.0.0.1",
        port=port,
        behind_proxy=True,
        trusted_proxies=["127.0.0.1"],
    )
    app = create_app(settings)
    # A database that refuses every write, as a read-only or full one does.
    refusing = Database(f"sqlite:///{tmp_path / 'refusing.sqlite3'}")
    create_schema(refusing.engine)
    log = io.StringIO()
    state = Served(f"http://127.0.0.1:{port}", app.state.services.database, log)

    @app.get("/test/bug")
    async def bug() -> None:
        raise RuntimeError("a bug")

    @app.get("/test/refused-write")
    def refused_write() -> None:
        state.write_attempts.append(1)
        with refusing.session() as session:
            session.execute(text("PRAGMA query_only = ON"))
            session.execute(text("DELETE FROM audit_events"))

    @app.middleware("http")
    async def remember_peer(request, call_next):  # type: ignore[no-untyped-def]
        state.peers.append(request.client.port)
        return await call_next(request)

    handler = logging.StreamHandler(log)
    handler.setFormatter(JsonFormatter())
    idp_logger = logging.getLogger("idp")
    idp_logger.addHandler(handler)
    server = uvicorn.Server(_uvicorn_config(app, settings, "info"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield state
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        idp_logger.removeHandler(handler)
        refusing.dispose()


def _assert_idp_page(answer: httpx.Response, status: int, reason: str) -> None:
    assert_refusal_page(answer, reason, status)
    assert answer.headers["x-request-id"] and answer.headers["x-frame-options"] == "DENY"


def test_a_bug_is_a_page_on_a_kept_alive_connection_and_one_json_line(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"), httpx.Client() as client:
        first = client.get(f"{served.base_url}/test/bug")
        second = client.get(f"{served.base_url}/test/bug")
        fine = client.get(f"{served.base_url}/healthz")
    for answer in (first, second):
        _assert_idp_page(answer, 500, "internal_error")
    assert fine.status_code == 200
    # One TCP connection for all three: the server never closed it.
    assert len(set(served.peers[-3:])) == 1, served.peers
    # uvicorn saw no exception (it would print a plain-text traceback and close).
    assert not [record for record in caplog.records if record.name.startswith("uvicorn")]
    errors = [line for line in served.log_lines() if line["logger"] == "idp.errors"]
    assert len(errors) == 2, errors  # one line per failed request
    for line in errors:
        assert "RuntimeError: a bug" in line["exception"]
        assert line["request_id"] in (first.headers["x-request-id"], second.headers["x-request-id"])
    with served.database.session() as session:
        audited = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.event == "request.failed", AuditEvent.reason == "internal_error")
        )
    assert audited == 2


def test_a_database_that_refuses_writes_is_a_try_again_page_after_one_more_try(
    served: Served,
) -> None:
    with httpx.Client() as client:
        answer = client.get(f"{served.base_url}/test/refused-write?step=1")
        again = client.get(f"{served.base_url}/healthz")
    _assert_idp_page(answer, 503, "service_unavailable")
    assert "Tjänsten är tillfälligt otillgänglig" in answer.text
    assert "The service is temporarily unavailable" in answer.text
    # The page's "try again" repeats the same step.
    assert 'href="/test/refused-write?step=1"' in answer.text
    # The database answered, so the request was run once more before the user was told.
    assert len(served.write_attempts) == 2
    assert again.status_code == 200 and len(set(served.peers[-2:])) == 1
    lines = [line for line in served.log_lines() if line["logger"] == "idp.errors"]
    assert [line["message"].split(" on ")[0] for line in lines][-1] == "service_unavailable"
    assert all("exception" not in line for line in lines), "an outage is not a traceback"


async def _close(listener: CertificateListener) -> None:
    await listener.close()
    connections = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in connections:
        task.cancel()
    await asyncio.gather(*connections, return_exceptions=True)


def test_the_certificate_listeners_last_resort_is_the_bilingual_page(test_pki: TestPki) -> None:
    """If the app itself raised (FailSafe is inside it, so only a broken app could), the card
    listener still answers with a page and a reason code, not a bare "Internal error"."""

    async def full_disk_app(_scope: dict, _receive: object, _send: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    port = free_port()
    listener = CertificateListener(
        full_disk_app,
        host="127.0.0.1",
        port=port,
        cert_file=test_pki.tls_server_cert,
        key_file=test_pki.tls_server_key,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(listener.start(), loop).result(timeout=10)
    try:
        with httpx.Client(verify=tls_context(test_pki.tls_ca_cert)) as client:
            answer = client.get(f"https://localhost:{port}/cert-login?ref=x")
    finally:
        asyncio.run_coroutine_threadsafe(_close(listener), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
    assert answer.status_code == 503
    assert reason_code(answer.text) == "service_unavailable"
    assert "Tjänsten är tillfälligt otillgänglig" in answer.text
    assert "The service is temporarily unavailable" in answer.text

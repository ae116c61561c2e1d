"""Operations: health, readiness, metrics, request ids in the logs, sweeping, the nginx
template, and proxy-mode settings. The embedded IdP of ``conftest`` serves the HTTP checks;
the rest are checked on their own."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import func, select

from idp.audit import record_audit_event
from idp.config import Settings
from idp.db import Database, create_schema
from idp.ops.health import ReadinessProbe
from idp.ops.metrics import IdpMetrics
from idp.ops.request_context import request_id_var
from idp.ops.sweeper import sweep_expired
from idp.server.logging_setup import JsonFormatter
from idp.server.run import ConfigurationError, check_settings
from idp.store.models import Order, PendingLogin, RevocationCacheEntry, SeenMessage, SsoSession
from siths_testkit.local_cluster import NGINX_TEMPLATE, ClusterError, render_template
from tests.conftest import IdpUnderTest
from tests.helpers.support import tls_context

NOW = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def database(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'idp.sqlite3'}")
    create_schema(database.engine)
    yield database
    database.dispose()


# --- over HTTP, on the embedded IdP ---------------------------------------------------------


def test_health_readiness_and_metrics(idp: IdpUnderTest) -> None:
    verify = tls_context(idp.ca_file)
    alive = httpx.get(f"{idp.base_url}/healthz", verify=verify)
    assert alive.status_code == 200 and alive.json() == {"status": "alive"}
    ready = httpx.get(f"{idp.base_url}/readyz", verify=verify)
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["database"]["ok"] and checks["database"]["backend"] == "sqlite"
    assert checks["keys"]["ok"] and checks["metadata"]["ok"]
    metrics = httpx.get(f"{idp.base_url}/metrics", verify=verify)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in (
        "idp_http_request_duration_seconds_bucket",
        "idp_orders_pending",
        "idp_pending_logins",
        "idp_sso_sessions_active",
    ):
        assert name in metrics.text
    assert 'route="/readyz"' in metrics.text


def test_every_answer_has_a_request_id_and_a_client_cannot_choose_it(idp: IdpUnderTest) -> None:
    verify = tls_context(idp.ca_file)
    chosen = "attacker-chosen-id"
    answer = httpx.get(f"{idp.base_url}/healthz", verify=verify, headers={"X-Request-ID": chosen})
    request_id = answer.headers["x-request-id"]
    # The embedded IdP trusts no proxy: the id is its own.
    assert re.fullmatch(r"[0-9a-f]{32}", request_id) and request_id != chosen


def test_log_lines_carry_the_request_id_and_the_node() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("node-a"))
    logger = logging.getLogger("idp.test-ops")
    logger.addHandler(handler)
    logger.propagate = False
    token = request_id_var.set("0123456789abcdef")
    try:
        logger.warning("hello", extra={"status": 200})
    finally:
        request_id_var.reset(token)
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["request_id"] == "0123456789abcdef"
    assert line["node"] == "node-a" and line["status"] == 200 and line["message"] == "hello"


def test_an_audit_event_is_one_json_line_with_its_fields(database: Database) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("node-a"))
    audit_logger = logging.getLogger("idp.audit")
    audit_logger.addHandler(handler)
    # setLevel, not .level: it also clears the logger's cache of earlier isEnabledFor answers.
    level = audit_logger.level
    audit_logger.setLevel(logging.INFO)
    try:
        with database.session() as session:
            record_audit_event(
                session,
                "login",
                outcome="failure",
                reason="revoked",
                hsa_id="SE2120001355-E0001",
                client_id="https://sp.example.test/metadata",
                method="siths-this-device",
                detail='a "quoted" detail, åäö',
            )
    finally:
        audit_logger.removeHandler(handler)
        audit_logger.setLevel(level)
    (text,) = stream.getvalue().splitlines()
    line = json.loads(text)
    assert line["logger"] == "idp.audit" and line["node"] == "node-a"
    assert {key: line[key] for key in ("audit", "outcome", "reason", "hsa_id", "method")} == {
        "audit": "login",
        "outcome": "failure",
        "reason": "revoked",
        "hsa_id": "SE2120001355-E0001",
        "method": "siths-this-device",
    }
    assert line["client_id"] == "https://sp.example.test/metadata"
    assert line["detail"] == 'a "quoted" detail, åäö'
    assert "message" not in line


# --- metrics --------------------------------------------------------------------------------


def test_audit_events_are_counted_only_once_committed(database: Database) -> None:
    metrics = IdpMetrics()
    metrics.watch_audit_events(database)
    with database.session() as session:
        record_audit_event(session, "login", outcome="success", method="siths-this-device")
    with pytest.raises(RuntimeError), database.session() as session:
        record_audit_event(session, "login", outcome="success", method="siths-this-device")
        session.flush()
        raise RuntimeError("the login failed after all")
    with database.session() as session:
        record_audit_event(
            session, "login.method", outcome="failure", reason="revoked", method="siths-other"
        )
    text = metrics.render().decode()
    assert 'idp_logins_total{method="siths-this-device",outcome="success"} 1.0' in text
    assert (
        'idp_login_attempts_total{method="siths-other",outcome="failure",reason="revoked"} 1.0'
        in text
    )


# --- sweeping -------------------------------------------------------------------------------


def _pending(reference: str, expires_at: dt.datetime) -> PendingLogin:
    return PendingLogin(
        id=reference,
        browser_binding="b",
        protocol="saml",
        protocol_state={},
        client_id="https://sp.example.test/metadata",
        created_at=expires_at - dt.timedelta(minutes=10),
        expires_at=expires_at,
    )


def test_sweeper_deletes_only_rows_expired_longer_than_the_grace(database: Database) -> None:
    hour = dt.timedelta(hours=1)
    with database.session() as session:
        session.add_all(
            [
                _pending("old", NOW - 2 * hour),
                _pending("recent", NOW - dt.timedelta(minutes=5)),  # says "expired" for now
                _pending("live", NOW + hour),
                SsoSession(
                    token_hash="s-old",
                    hsa_id="SE2120001355-E0001",
                    authentication={},
                    created_at=NOW - 10 * hour,
                    expires_at=NOW - 2 * hour,
                ),
                SeenMessage(issuer="sp", message_id="m-old", expires_at=NOW - 2 * hour),
                SeenMessage(issuer="sp", message_id="m-live", expires_at=NOW + hour),
                RevocationCacheEntry(key="k-old", status="good", until=NOW - 2 * hour),
                Order(
                    order_ref="o-old",
                    pending_login_id="old",
                    browser_binding="b",
                    qr_start_token="q",
                    qr_start_secret="s",
                    auto_start_token="a",
                    data_to_sign="",
                    user_visible_data="",
                    created_at=NOW - 3 * hour,
                    expires_at=NOW - 2 * hour,
                ),
            ]
        )
    deleted = sweep_expired(database, grace=hour, now=NOW)
    assert deleted == {
        "pending_logins": 1,
        "orders": 1,
        "sso_sessions": 1,
        "seen_messages": 1,
        "revocation_cache": 1,
    }
    with database.session() as session:
        left = session.scalars(select(PendingLogin.id).order_by(PendingLogin.id)).all()
        assert left == ["live", "recent"]
        assert session.scalar(select(func.count()).select_from(SeenMessage)) == 1
    assert sweep_expired(database, grace=hour, now=NOW) == {}


# --- readiness ------------------------------------------------------------------------------


def _metadata(valid_until: dt.datetime) -> str:
    instant = valid_until.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'entityID="https://sp.example.test/metadata" validUntil="{instant}"/>'
    )


def test_stale_sp_metadata_makes_the_node_not_ready(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    services = SimpleNamespace(settings=SimpleNamespace(sp_metadata_dir=tmp_path))
    probe = ReadinessProbe(
        services,  # type: ignore[arg-type]
        oidc=None,  # type: ignore[arg-type]
        idp_metadata=lambda: _metadata(now + dt.timedelta(days=1)),
    )
    (tmp_path / "fresh.xml").write_text(_metadata(now + dt.timedelta(hours=1)))
    assert probe._run(probe._metadata)["ok"]
    (tmp_path / "stale.xml").write_text(_metadata(now - dt.timedelta(hours=1)))
    failed = probe._run(probe._metadata)
    assert not failed["ok"] and "stale.xml" in failed["error"]


# --- proxy mode and the nginx template --------------------------------------------------------


def test_proxy_mode_needs_trusted_proxies(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="IDP_TRUSTED_PROXIES"):
        check_settings(Settings(var_dir=tmp_path, behind_proxy=True))
    check_settings(Settings(var_dir=tmp_path, behind_proxy=True, trusted_proxies=["10.0.0.2"]))


def test_nginx_template_sets_the_certificate_header_only_for_certificate_login() -> None:
    template = NGINX_TEMPLATE.read_text("utf-8")
    with pytest.raises(ClusterError, match="IDP_NODE_A"):
        render_template(template, {})
    names = set(re.findall(r"\$\{([A-Z0-9_]+)\}", template))
    rendered = render_template(template, {name: f"<{name}>" for name in names})
    assert "${" not in rendered and "$ssl_client_escaped_cert" in rendered
    header_lines = [
        line.strip()
        for line in rendered.splitlines()
        if "proxy_set_header X-SSL-Client-Cert" in line
    ]
    assert header_lines.count("proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;") == 1
    assert all(line.endswith('"";') for line in header_lines if "$ssl" not in line)
    # Every location that proxies sets the header (to the certificate or to nothing).
    assert len(header_lines) == rendered.count("proxy_pass ")
    assert rendered.count("ssl_verify_client optional_no_ca;") == 1

"""Must show: an SP whose only presence is a signed aggregate served over HTTPS logs in; when
the aggregate is replaced by an expired or badly signed one it stays trusted on the last good
copy until that copy's validUntil, then not. A separate IdP process, over real sockets.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from idp.federation.aggregate import build_aggregate
from siths_testkit.pki import TestPki
from tests.helpers.aggregate_server import AggregateServer, serve_aggregate
from tests.helpers.certificates import make_certificate
from tests.helpers.flows import choose_this_device, posted_form, started_login
from tests.helpers.idp_process import idp_env, import_people, start_idp
from tests.helpers.saml_sp import TestServiceProvider, make_service_provider
from tests.helpers.support import (
    RunningServer,
    browser,
    reason_code,
    tls_context,
)

REFRESH_SECONDS = 0.5
# Long enough to log in a few times, short enough to wait for.
GOOD_COPY_SECONDS = 25


@dataclass
class FederationIdp:
    """A separate IdP process whose SPs come only from ``aggregate``."""

    base_url: str
    work: Path
    aggregate: AggregateServer
    sp: TestServiceProvider
    server: RunningServer
    key: Path
    cert: Path


def _sign(members: Path, key: Path, cert: Path, valid_for: dt.timedelta) -> bytes:
    return build_aggregate(
        sorted(members.glob("*.xml")),
        key_file=key,
        cert_file=cert,
        valid_until=dt.datetime.now(dt.UTC) + valid_for,
    )


@pytest.fixture(scope="module")
def federation_idp(
    test_pki: TestPki, ocsp_responder: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FederationIdp]:
    work = tmp_path_factory.mktemp("federation-idp")
    key, cert, _ = make_certificate(work / "keys", "federation")
    with serve_aggregate(test_pki.tls_server_cert, test_pki.tls_server_key) as aggregate:
        env = idp_env(  # no SP metadata files: SPs come from the aggregate only
            test_pki,
            work,
            IDP_SP_METADATA_AGGREGATE_URL=aggregate.url,
            IDP_SP_METADATA_FEDERATION_CERT=str(cert),
            IDP_SP_METADATA_AGGREGATE_CA_FILE=str(test_pki.tls_ca_cert),
            IDP_SP_METADATA_REFRESH_SECONDS=str(REFRESH_SECONDS),
        )
        base_url = env["IDP_BASE_URL"]
        import_people(env, work)
        # The SP needs the IdP's metadata, the IdP the SP's: the IdP's is the same for any
        # process with this PKI, so start the IdP with an empty aggregate first.
        idp_metadata = work / "idp-metadata.xml"
        (work / "members").mkdir()
        aggregate.document = b""
        server = start_idp(env, test_pki.tls_ca_cert, work / "idp.log")
        try:
            response = httpx.get(
                f"{base_url}/saml/metadata", verify=tls_context(test_pki.tls_ca_cert)
            )
            idp_metadata.write_text(response.text, encoding="utf-8")
            sp = make_service_provider(
                work / "sp",
                entity_id="https://fed-sp.example.test/metadata",
                idp_metadata_file=idp_metadata,
            )
            (work / "members" / "fed-sp.xml").write_text(sp.metadata_xml, encoding="utf-8")
            yield FederationIdp(base_url, work, aggregate, sp, server, key, cert)
        finally:
            server.stop()


def _try_login(sp: TestServiceProvider, base_url: str, test_pki: TestPki) -> str | None:
    """None if Anna logs in through ``sp`` (the SP verifies the Response); else the reason."""
    card = test_pki.cards["anna"]
    login_url, request_id = sp.login_url()
    with browser(test_pki.tls_ca_cert, (card.cert, card.key)) as client:
        chooser = client.get(login_url)
        if not started_login(chooser):
            return reason_code(chooser.text) or f"HTTP {chooser.status_code}"
        final = choose_this_device(client, chooser, base_url)
    _action, fields = posted_form(final)
    parsed = sp.parse(fields["SAMLResponse"], request_id)
    assert parsed.ava["http://sambi.se/attributes/1/employeeHsaId"] == ["SE2120001355-E0001"]
    return None


def _wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached")


def test_sp_from_a_remote_aggregate_until_its_last_good_copy_expires(
    federation_idp: FederationIdp, test_pki: TestPki
) -> None:
    idp = federation_idp
    base_url, work, aggregate, sp, server = (
        idp.base_url,
        idp.work,
        idp.aggregate,
        idp.sp,
        idp.server,
    )
    key, cert = idp.key, idp.cert
    other_key, other_cert, _ = make_certificate(work / "keys", "impostor")
    members = work / "members"
    # Not yet in any aggregate: unknown.
    assert _try_login(sp, base_url, test_pki) == "unknown_sp"

    aggregate.document = _sign(members, key, cert, dt.timedelta(seconds=GOOD_COPY_SECONDS))
    good_until = time.monotonic() + GOOD_COPY_SECONDS
    _wait_for(lambda: _try_login(sp, base_url, test_pki) is None)

    # Replaced by an expired one, then by one signed with another key: both refused, the
    # last good copy stays in use, and the IdP says so.
    aggregate.document = _sign(members, key, cert, -dt.timedelta(minutes=1))
    _wait_for(lambda: "the aggregate expired at" in server.log())
    assert _try_login(sp, base_url, test_pki) is None
    aggregate.document = _sign(members, other_key, other_cert, dt.timedelta(hours=1))
    _wait_for(lambda: "the signature of" in server.log())
    assert _try_login(sp, base_url, test_pki) is None
    assert "keeping the last good copy" in server.log()
    with sqlite3.connect(work / "var" / "idp.sqlite3") as connection:
        audited = connection.execute(
            "SELECT detail FROM audit_events WHERE event = 'saml.metadata_refresh'"
            " AND outcome = 'refused'"
        ).fetchall()
    assert any("expired:" in row[0] and "keeping the last good copy" in row[0] for row in audited)
    assert any("bad_signature:" in row[0] for row in audited)

    # Once the good copy's validUntil passes, the SP is no longer trusted.
    time.sleep(max(0.0, good_until - time.monotonic()) + 1)
    assert _try_login(sp, base_url, test_pki) == "unknown_sp"

    # A fresh good aggregate brings it back, without a restart.
    aggregate.document = _sign(members, key, cert, dt.timedelta(hours=1))
    _wait_for(lambda: _try_login(sp, base_url, test_pki) is None)

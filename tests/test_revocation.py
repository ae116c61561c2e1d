"""Issue 4 over real sockets: revocation of SITHS cards against the real OCSP responder process.

The session's ``idp pki ocsp-responder`` (see ``conftest``) serves the test PKI's OCSP and CRLs
with a short nextUpdate. Each test issues its own card whose AIA (OCSP) and CRL distribution
point lead to the responder's real paths, to one of its deliberately misbehaving paths
(:mod:`siths_testkit.pki.ocsp_responder`) or to a closed port; logs in with it at the real IdP; and
asserts the reason code the user sees and the audit event (whose detail names the exact check
that failed). A second IdP process with soft-fail on shows what soft-fail forgives, and what not.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from cryptography.x509 import ocsp

from idp.cli import main as idp_command
from idp.siths.revocation import RevocationChecker, RevocationPolicy, RevocationProblem, http_fetch
from siths_testkit.app_simulator import AppApiError, SithsEidApp
from siths_testkit.pki import TestPki, issue_card
from siths_testkit.pki.revocation import published_url
from siths_testkit.pki.storage import load_certificate
from tests.conftest import OCSP_NEXT_UPDATE_SECONDS, IdpUnderTest
from tests.helpers.flows import follow, login_with_card, open_login
from tests.helpers.idp_process import idp_env, import_people, start_idp
from tests.helpers.refusals import assert_refusal_page
from tests.helpers.saml_sp import make_service_provider
from tests.helpers.support import (
    browser,
    free_port,
    parse_page,
    tls_context,
)

ANNA = "SE2120001355-E0001"


# --- cards, logins, audit ---------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    hsa_id: str
    cert: Path
    key: Path

    @property
    def files(self) -> tuple[Path, Path]:
        return self.cert, self.key

    def certificate(self) -> x509.Certificate:
        """For the app simulator: the card's certificate."""
        return x509.load_pem_x509_certificate(self.cert.read_bytes())

    def sign(self, data: bytes) -> tuple[str, bytes]:
        """For the app simulator: the card's key signs, as the card would."""
        key = load_pem_private_key(self.key.read_bytes(), password=None)
        assert isinstance(key, RSAPrivateKey)
        return "rsa-pkcs1-sha256", key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def responder_url(pki: TestPki) -> str:
    return published_url(pki.directory)


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connection refused, at once."""
    return f"http://127.0.0.1:{free_port()}"


def issue(
    pki: TestPki, out_dir: Path, hsa_id: str, *, ocsp: str | None = None, crl: str | None = None
) -> Card:
    """A good card; ``ocsp``/``crl`` replace the PKI's URLs (``""``: no such extension)."""
    issued = issue_card(
        pki,
        hsa_id=hsa_id,
        given_name="Rut",
        surname="Spärr",
        out_dir=out_dir,
        ocsp_url=ocsp,
        crl_url=crl,
    )
    return Card(hsa_id, issued.cert, issued.key)


def misbehaving_card(idp: IdpUnderTest, out_dir: Path, hsa_id: str, path: str) -> Card:
    """A card whose only revocation source is the responder's misbehaving ``/ocsp/<path>``."""
    return issue(idp.pki, out_dir, hsa_id, ocsp=f"{responder_url(idp.pki)}/ocsp/{path}", crl="")


def register(idp: IdpUnderTest, hsa_id: str) -> None:
    added = idp.idp_cli(
        "people",
        "add",
        "--hsa-id",
        hsa_id,
        "--given-name",
        "Rut",
        "--surname",
        "Spärr",
        "--organisation",
        "Göteborgs Stad",
    )
    assert added.returncode == 0, added.stderr


def login_this_device(idp: IdpUnderTest, card: Card) -> httpx.Response:
    login_url, _ = idp.sp.login_url()
    with browser(idp.ca_file, card.files) as client:
        return login_with_card(client, login_url, idp.base_url)


@dataclass
class AppOutcome:
    """How a cross-device login ended: the app's error (if any), and what the browser saw."""

    error: AppApiError | None
    collect: dict
    final: httpx.Response | None


def login_other_device(idp: IdpUnderTest, card: Card) -> AppOutcome:
    """The browser picks "annan enhet"; the app (the real simulator) signs with ``card``."""
    login_url, _ = idp.sp.login_url()
    with browser(idp.ca_file) as client:
        chooser = open_login(client, login_url, idp.base_url)
        href = parse_page(chooser.text).links["method-other-device"]
        ref = urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)["ref"][0]
        page = client.get(idp.base_url + href)
        autostart = parse_page(page.text).links["autostart"]
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(autostart).query)["autostarttoken"][0]
        error = None
        with SithsEidApp(idp.base_url, idp.ca_file, card) as app:
            scan = app.scan_auto_start(token)
            try:
                app.sign(scan)
            except AppApiError as exc:
                error = exc
        view = client.get(f"{idp.base_url}/login/other-device/collect?ref={ref}").json()
        final = None
        if view["status"] == "complete":
            final = follow(client, client.get(idp.base_url + view["next"]), idp.base_url)
        return AppOutcome(error, view, final)


@dataclass(frozen=True)
class AuditRow:
    event: str
    outcome: str
    reason: str
    hsa_id: str
    method: str
    detail: str


def audit_mark(idp: IdpUnderTest) -> int:
    with sqlite3.connect(idp.database_file()) as connection:
        return connection.execute("SELECT coalesce(max(id), 0) FROM audit_events").fetchone()[0]


def login_events_since(idp: IdpUnderTest, mark: int) -> list[AuditRow]:
    with sqlite3.connect(idp.database_file()) as connection:
        rows = connection.execute(
            "SELECT event, outcome, reason, hsa_id, method, detail FROM audit_events"
            " WHERE id > ? AND event = 'login.method' ORDER BY id",
            (mark,),
        ).fetchall()
    return [AuditRow(*row) for row in rows]


def the_login_event(idp: IdpUnderTest, mark: int, card: Card) -> AuditRow:
    rows = [row for row in login_events_since(idp, mark) if row.hsa_id == card.hsa_id]
    assert len(rows) == 1, login_events_since(idp, mark)
    return rows[0]


def assert_card_refused(
    idp: IdpUnderTest, page: httpx.Response, card: Card, mark: int, reason: str, *details: str
) -> AuditRow:
    """Refused with ``reason`` on the Swedish/English page, nothing for the SP, and audited
    with that reason and a detail containing each of ``details``."""
    assert_refusal_page(page, reason)
    row = the_login_event(idp, mark, card)
    assert (row.outcome, row.reason, row.method) == ("failure", reason, "siths-this-device"), row
    for fragment in details:
        assert fragment in row.detail, row
    return row


def assert_logged_in(idp: IdpUnderTest, page: httpx.Response, card: Card, mark: int) -> AuditRow:
    assert page.status_code == 200, page.text[:2000]
    assert "SAMLResponse" in page.text
    row = the_login_event(idp, mark, card)
    assert row.outcome == "success", row
    return row


def wait_for_cache_expiry(answered_at: float) -> None:
    """Until the IdP's cached good answer (valid to the responder's nextUpdate) has expired."""
    time.sleep(max(0.0, answered_at + OCSP_NEXT_UPDATE_SECONDS + 0.3 - time.monotonic()))


# --- must show 1: a card revoked with `idp card revoke` stops working -------------------------


def test_revoked_card_is_refused_at_next_login_by_client_certificate(
    idp: IdpUnderTest, tmp_path: Path
) -> None:
    hsa_id = "SE2120001355-R0001"
    register(idp, hsa_id)
    card = issue(idp.pki, tmp_path, hsa_id)  # the PKI's own AIA and CRL DP

    mark = audit_mark(idp)
    row = assert_logged_in(idp, login_this_device(idp, card), card, mark)
    answered_at = time.monotonic()
    assert "revocation good by ocsp" in row.detail, row

    revoked = idp.idp_cli(
        "card", "revoke", hsa_id, "--reason", "keyCompromise", "--pki", str(idp.pki.directory)
    )
    assert revoked.returncode == 0, revoked.stderr
    assert f"{hsa_id} serial" in revoked.stdout and "revoked (keyCompromise)" in revoked.stdout
    revoked_at = time.monotonic()

    # The IdP may reuse its good answer until the responder's nextUpdate, no longer.
    wait_for_cache_expiry(answered_at)
    mark = audit_mark(idp)
    page = login_this_device(idp, card)
    assert_card_refused(idp, page, card, mark, "certificate_revoked", "keyCompromise", "by ocsp")
    assert "Ditt kort är spärrat" in page.text
    assert time.monotonic() - revoked_at < OCSP_NEXT_UPDATE_SECONDS + 5


def test_revoked_card_is_refused_at_next_login_by_the_app(
    idp: IdpUnderTest, tmp_path: Path
) -> None:
    hsa_id = "SE2120001355-R0002"
    register(idp, hsa_id)
    card = issue(idp.pki, tmp_path, hsa_id)

    mark = audit_mark(idp)
    outcome = login_other_device(idp, card)
    assert outcome.error is None and outcome.final is not None, outcome
    assert "SAMLResponse" in outcome.final.text
    answered_at = time.monotonic()
    row = the_login_event(idp, mark, card)
    assert row.outcome == "success" and "revocation good by ocsp" in row.detail, row

    revoked = idp.idp_cli(
        "card", "revoke", hsa_id, "--reason", "keyCompromise", "--pki", str(idp.pki.directory)
    )
    assert revoked.returncode == 0, revoked.stderr

    wait_for_cache_expiry(answered_at)
    mark = audit_mark(idp)
    outcome = login_other_device(idp, card)
    assert outcome.error is not None and outcome.error.error_code == "certificateErr"
    assert "certificate_revoked" in outcome.error.details
    assert outcome.collect["status"] == "failed", outcome.collect
    assert outcome.collect["reason"] == "certificate_revoked", outcome.collect
    assert "Ditt kort är spärrat" in outcome.collect["message"]["sv"]
    assert outcome.final is None
    row = the_login_event(idp, mark, card)
    assert (row.outcome, row.reason, row.method) == (
        "failure",
        "certificate_revoked",
        "siths-other-device",
    ), row
    assert "keyCompromise" in row.detail and "by ocsp" in row.detail, row


# --- the CRL as the fallback -----------------------------------------------------------------


def test_ocsp_unreachable_falls_back_to_the_crl(idp: IdpUnderTest, tmp_path: Path) -> None:
    hsa_id = "SE2120001355-R0003"
    register(idp, hsa_id)
    crl = f"{responder_url(idp.pki)}/crl/hsa-id-ca.crl"
    card = issue(idp.pki, tmp_path, hsa_id, ocsp=f"{closed_port_url()}/ocsp", crl=crl)
    mark = audit_mark(idp)
    row = assert_logged_in(idp, login_this_device(idp, card), card, mark)
    assert "revocation good by crl" in row.detail, row


def test_card_revoked_by_crl_when_ocsp_is_unreachable(idp: IdpUnderTest, tmp_path: Path) -> None:
    crl = f"{responder_url(idp.pki)}/crl/hsa-id-ca.crl"
    card = issue(idp.pki, tmp_path, "SE2120001355-R0004", ocsp=f"{closed_port_url()}/ocsp", crl=crl)
    # Revoked by its certificate file (the other form of `idp card revoke`).
    revoked = idp.idp_cli(
        "card",
        "revoke",
        str(card.cert),
        "--reason",
        "keyCompromise",
        "--pki",
        str(idp.pki.directory),
    )
    assert revoked.returncode == 0, revoked.stderr
    mark = audit_mark(idp)
    page = login_this_device(idp, card)
    assert_card_refused(idp, page, card, mark, "certificate_revoked", "by crl", "keyCompromise")


# --- every bad answer, each refused with its own audited reason -------------------------------


def test_unknown_status_is_refused(idp: IdpUnderTest, tmp_path: Path) -> None:
    card = misbehaving_card(idp, tmp_path, "SE2120001355-R0010", "unknown")
    mark = audit_mark(idp)
    page = login_this_device(idp, card)
    assert_card_refused(idp, page, card, mark, "revocation_status_unknown", "ocsp")
    assert "Kortets status är okänd" in page.text


@pytest.mark.parametrize(
    ("path", "hsa_id", "problem"),
    [
        ("unrelated-key", "SE2120001355-R0011", "ocsp bad_signature"),
        ("no-ocsp-eku", "SE2120001355-R0012", "ocsp untrusted_responder"),
        ("stale", "SE2120001355-R0013", "ocsp stale_response"),
        ("other-certificate", "SE2120001355-R0014", "ocsp wrong_certificate"),
        ("wrong-nonce", "SE2120001355-R0015", "ocsp nonce_mismatch"),
        ("garbage", "SE2120001355-R0016", "ocsp invalid_response"),
    ],
    ids=[
        "signed-by-unrelated-key",
        "responder-without-ocsp-signing-eku",
        "stale-response",
        "response-for-another-certificate",
        "replayed-response-wrong-nonce",
        "garbage-bytes",
    ],
)
def test_invalid_ocsp_answer_is_refused(
    idp: IdpUnderTest, tmp_path: Path, path: str, hsa_id: str, problem: str
) -> None:
    card = misbehaving_card(idp, tmp_path, hsa_id, path)
    mark = audit_mark(idp)
    page = login_this_device(idp, card)
    assert_card_refused(idp, page, card, mark, "revocation_unavailable", problem)


def test_responder_down_is_refused_when_failing_closed(idp: IdpUnderTest, tmp_path: Path) -> None:
    card = issue(idp.pki, tmp_path, "SE2120001355-R0020", ocsp=f"{closed_port_url()}/ocsp", crl="")
    mark = audit_mark(idp)
    page = login_this_device(idp, card)
    assert_card_refused(
        idp, page, card, mark, "revocation_unavailable", "unavailable", "unreachable"
    )
    assert "Försök igen" in page.text


@pytest.mark.parametrize(
    ("crl_name", "hsa_id", "problem"),
    [
        ("expired.crl", "SE2120001355-R0021", "crl stale_crl"),
        ("wrongly-signed.crl", "SE2120001355-R0022", "crl bad_signature"),
    ],
    ids=["crl-expired", "crl-wrongly-signed"],
)
def test_bad_crl_is_refused(
    idp: IdpUnderTest, tmp_path: Path, crl_name: str, hsa_id: str, problem: str
) -> None:
    crl = f"{responder_url(idp.pki)}/crl/{crl_name}"
    card = issue(idp.pki, tmp_path, hsa_id, ocsp=f"{closed_port_url()}/ocsp", crl=crl)
    mark = audit_mark(idp)
    page = login_this_device(idp, card)
    assert_card_refused(
        idp, page, card, mark, "revocation_unavailable", "ocsp unreachable", problem
    )


# --- soft-fail: a second IdP process that lets a card in when no source answers ----------------


@pytest.fixture(scope="module")
def soft_fail_idp(
    idp: IdpUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IdpUnderTest]:
    """Another IdP on the same PKI and responder, with IDP_REVOCATION_SOFT_FAIL=true."""
    work = tmp_path_factory.mktemp("soft-fail-idp")
    env = idp_env(idp.pki, work, IDP_REVOCATION_SOFT_FAIL="true")
    var_dir, sp_metadata_dir = Path(env["IDP_VAR_DIR"]), Path(env["IDP_SP_METADATA_DIR"])
    base_url = env["IDP_BASE_URL"]
    import_people(env, work)
    server = start_idp(env, idp.pki.tls_ca_cert, work / "idp.log")
    try:
        metadata_file = work / "idp-metadata.xml"
        metadata = httpx.get(f"{base_url}/saml/metadata", verify=tls_context(idp.ca_file))
        metadata_file.write_text(metadata.text, encoding="utf-8")
        sp = make_service_provider(
            work / "sp",
            entity_id="https://sp.example.test/metadata",
            idp_metadata_file=metadata_file,
        )
        (sp_metadata_dir / "sp.xml").write_text(sp.metadata_xml, encoding="utf-8")
        yield IdpUnderTest(
            server=server,
            base_url=base_url,
            cert_login_url=env["IDP_CERT_LOGIN_URL"],
            pki=idp.pki,
            env=env,
            var_dir=var_dir,
            sp_metadata_dir=sp_metadata_dir,
            idp_metadata_file=metadata_file,
            sp=sp,
            eid_sp=sp,
            unsigned_sp=sp,
            work_dir=work,
        )
    finally:
        server.stop()


def test_responder_down_with_soft_fail_lets_in_and_says_so_loudly(
    soft_fail_idp: IdpUnderTest, tmp_path: Path
) -> None:
    card = issue(soft_fail_idp.pki, tmp_path, ANNA, ocsp=f"{closed_port_url()}/ocsp", crl="")
    mark = audit_mark(soft_fail_idp)
    row = assert_logged_in(soft_fail_idp, login_this_device(soft_fail_idp, card), card, mark)
    assert row.reason == "revocation_soft_fail", row
    assert "REVOCATION SOFT-FAIL" in row.detail and "unreachable" in row.detail, row
    log = soft_fail_idp.server.log()
    assert "revocation SOFT-FAIL is ON" in log  # at start-up
    assert "REVOCATION SOFT-FAIL: login allowed WITHOUT revocation status" in log


def test_an_unreachable_responder_is_not_asked_again_for_a_while(
    soft_fail_idp: IdpUnderTest, tmp_path: Path
) -> None:
    """While a responder is down, each login does not try it again: the first login found the
    port closed, the next one (within IDP_REVOCATION_UNREACHABLE_RETRY_SECONDS, 30 s) counts it
    unreachable without asking, and is still let in only as a loud soft-fail."""
    card = issue(soft_fail_idp.pki, tmp_path, ANNA, ocsp=f"{closed_port_url()}/ocsp", crl="")
    mark = audit_mark(soft_fail_idp)
    first = assert_logged_in(soft_fail_idp, login_this_device(soft_fail_idp, card), card, mark)
    assert "ConnectError" in first.detail and "next try after" not in first.detail, first
    mark = audit_mark(soft_fail_idp)
    second = assert_logged_in(soft_fail_idp, login_this_device(soft_fail_idp, card), card, mark)
    assert second.reason == "revocation_soft_fail", second
    assert "unreachable" in second.detail and "next try after" in second.detail, second
    assert "ConnectError" not in second.detail, second


def test_checker_remembers_a_closed_port_until_the_retry_time(
    idp: IdpUnderTest, tmp_path: Path
) -> None:
    """The checker with its real HTTP fetcher against a closed port. With soft-fail the port is
    asked once, then not until ``unreachable_retry`` has passed (each check soft-fails
    meanwhile, as unreachable); failing closed it is asked at every check, so that logins
    work again as soon as the responder does."""
    closed = f"{closed_port_url()}/ocsp"
    card = load_certificate(issue(idp.pki, tmp_path, ANNA, ocsp=closed, crl="").cert)
    issuer = load_certificate(idp.pki.hsa_ca_cert)
    fetch = http_fetch(timeout_seconds=2.0)
    asked: list[str] = []

    def counting_fetch(url: str, body: bytes | None) -> bytes:
        asked.append(url)
        return fetch(url, body)

    retry = dt.timedelta(seconds=30)
    policy = RevocationPolicy(soft_fail=True, unreachable_retry=retry)
    checker = RevocationChecker(policy, None, counting_fetch)
    now = dt.datetime.now(dt.UTC)
    for moment in (now, now + retry - dt.timedelta(seconds=1)):
        decision = checker.check(card, issuer, moment)
        assert decision.soft_failed and "unreachable" in decision.detail, decision
    assert asked == [closed]
    assert checker.check(card, issuer, now + retry).soft_failed
    assert asked == [closed, closed]

    asked.clear()
    closed_checker = RevocationChecker(
        RevocationPolicy(unreachable_retry=retry), None, counting_fetch
    )
    for _ in range(2):
        with pytest.raises(RevocationProblem) as refused:
            closed_checker.check(card, issuer, now)
        assert refused.value.reason == "unavailable" and "unreachable" in refused.value.detail
    assert asked == [closed, closed]


def test_soft_fail_does_not_forgive_an_invalid_answer(
    soft_fail_idp: IdpUnderTest, tmp_path: Path
) -> None:
    url = f"{responder_url(soft_fail_idp.pki)}/ocsp/unrelated-key"
    card = issue(soft_fail_idp.pki, tmp_path, ANNA, ocsp=url, crl="")
    mark = audit_mark(soft_fail_idp)
    page = login_this_device(soft_fail_idp, card)
    assert_card_refused(soft_fail_idp, page, card, mark, "revocation_unavailable", "bad_signature")


def test_soft_fail_still_refuses_a_revoked_card(
    soft_fail_idp: IdpUnderTest, tmp_path: Path
) -> None:
    card = issue(soft_fail_idp.pki, tmp_path, "SE2120001355-R0030")
    revoked = soft_fail_idp.idp_cli(
        "card", "revoke", str(card.cert), "--pki", str(soft_fail_idp.pki.directory)
    )
    assert revoked.returncode == 0, revoked.stderr
    mark = audit_mark(soft_fail_idp)
    page = login_this_device(soft_fail_idp, card)
    assert_card_refused(soft_fail_idp, page, card, mark, "certificate_revoked", "by ocsp")


# --- the responder itself, as any OCSP client sees it -----------------------------------------


def test_responder_answers_get_requests_per_rfc_6960(idp: IdpUnderTest) -> None:
    anna = x509.load_pem_x509_certificate(idp.pki.cards["anna"].cert.read_bytes())
    ca = x509.load_pem_x509_certificate(idp.pki.hsa_ca_cert.read_bytes())
    # SHA-1 CertIDs are what most OCSP clients still send (RFC 5019); the responder must cope.
    request = ocsp.OCSPRequestBuilder().add_certificate(anna, ca, hashes.SHA1()).build()  # noqa: S303
    encoded = urllib.parse.quote(
        base64.b64encode(request.public_bytes(Encoding.DER)).decode(), safe=""
    )
    answer = httpx.get(f"{responder_url(idp.pki)}/ocsp/{encoded}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/ocsp-response"
    response = ocsp.load_der_ocsp_response(answer.content)
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == anna.serial_number
    assert response.next_update_utc is not None and response.this_update_utc is not None
    lifetime = (response.next_update_utc - response.this_update_utc).total_seconds()
    assert lifetime == OCSP_NEXT_UPDATE_SECONDS
    (responder,) = response.certificates
    responder.verify_directly_issued_by(ca)


def test_responder_is_not_authoritative_for_other_cas(idp: IdpUnderTest) -> None:
    tls_server = x509.load_pem_x509_certificate(idp.pki.tls_server_cert.read_bytes())
    tls_ca = x509.load_pem_x509_certificate(idp.pki.tls_ca_cert.read_bytes())
    request = ocsp.OCSPRequestBuilder().add_certificate(tls_server, tls_ca, hashes.SHA256()).build()
    answer = httpx.post(
        f"{responder_url(idp.pki)}/ocsp",
        content=request.public_bytes(Encoding.DER),
        headers={"Content-Type": "application/ocsp-request"},
    )
    response = ocsp.load_der_ocsp_response(answer.content)
    assert response.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


def idp_in_process(*args: str):  # type: ignore[no-untyped-def]
    """The ``idp`` command in this process (a subprocess costs a second of imports)."""
    return CliRunner().invoke(idp_command, list(args), catch_exceptions=False)


def test_unknown_hsa_id_cannot_be_revoked(idp: IdpUnderTest) -> None:
    result = idp_in_process(
        "card", "revoke", "SE2120001355-NOSUCH1", "--pki", str(idp.pki.directory)
    )
    assert result.exit_code == 1
    assert "no unexpired certificate with HSA-ID SE2120001355-NOSUCH1" in result.output


def test_foreign_certificate_cannot_be_revoked(idp: IdpUnderTest) -> None:
    forged = idp.pki.cards["forged"].cert
    result = idp_in_process("card", "revoke", str(forged), "--pki", str(idp.pki.directory))
    assert result.exit_code == 1
    assert "not issued by this PKI's HSA-id CA" in result.output


def test_crl_command_writes_crls_that_list_revoked_cards(idp: IdpUnderTest, tmp_path: Path) -> None:
    card = issue(idp.pki, tmp_path, "SE2120001355-R0040")
    revoked = idp_in_process("card", "revoke", str(card.cert), "--pki", str(idp.pki.directory))
    assert revoked.exit_code == 0, revoked.output
    written = idp_in_process("pki", "crl", "--dir", str(idp.pki.directory), "--valid-hours", "2")
    assert written.exit_code == 0, written.output
    assert "hsa-id-ca.crl" in written.output
    crl = x509.load_der_x509_crl((idp.pki.directory / "crl" / "hsa-id-ca.crl").read_bytes())
    ca = x509.load_pem_x509_certificate(idp.pki.hsa_ca_cert.read_bytes())
    assert crl.is_signature_valid(ca.public_key())
    assert crl.get_revoked_certificate_by_serial_number(card.certificate().serial_number)
    assert crl.next_update_utc is not None
    assert 7100 < (crl.next_update_utc - crl.last_update_utc).total_seconds() <= 7200
    assert (idp.pki.directory / "crl" / "person-id-ca.crl").is_file()


def test_cards_point_at_the_responder(idp: IdpUnderTest) -> None:
    anna = x509.load_pem_x509_certificate(idp.pki.cards["anna"].cert.read_bytes())
    aia = anna.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    cdp = anna.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    assert not aia.critical and not cdp.critical
    url = responder_url(idp.pki)
    assert url.startswith("http://127.0.0.1:")
    assert [d.access_location.value for d in aia.value] == [f"{url}/ocsp"]
    assert [n.value for p in cdp.value for n in p.full_name or []] == [f"{url}/crl/hsa-id-ca.crl"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)

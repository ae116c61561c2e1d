"""The portal's pages against the real IdP: OIDC login with a card (the portal in-process,
the IdP a real server), the IT-kontaktperson's order form and CSV import with progress, the EKU
administrator's list with its actions, and the mails those send over real SMTP."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from portal import orders, roles
from portal.app import create_app
from portal.config import Settings, today
from portal.models import EKU_ADMIN, IT_CONTACT
from portal.orders import OrderInput
from tests.conftest import IdpUnderTest
from tests.helpers.support import reason_code
from tests.portal.smtp_sink import SmtpSink
from tests.portal.web_support import csrf_of, log_in, register_oidc_client

BASE = "https://portal-web.example.test"
IT_HSA_ID = "SE5567000010-P0001"  # Erik Ek at the private provider
EKU_HSA_ID = "SE2120001355-E0001"  # Anna Andersson at Göteborgs Stad
IN_A_YEAR = (today() + dt.timedelta(days=365)).isoformat()


@pytest.fixture(scope="module")
def client_secret(idp: IdpUnderTest) -> str:
    return register_oidc_client(idp, "portal-web-test", BASE)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink().start()
    yield server
    server.stop()


@pytest.fixture
def app_settings(idp: IdpUnderTest, client_secret: str, sink: SmtpSink, tmp_path: Path) -> Settings:
    return Settings(
        base_url=BASE,
        var_dir=tmp_path,
        pki_dir=idp.pki.directory,
        session_secret="portal-web-" + "s" * 32,
        oidc_issuer=idp.base_url,
        oidc_client_id="portal-web-test",
        oidc_client_secret=client_secret,
        smtp_port=sink.port,
    )


@pytest.fixture
def app(app_settings: Settings):  # type: ignore[no-untyped-def]
    app = create_app(app_settings)
    with app.state.database.session() as session:
        roles.grant(session, IT_HSA_ID, IT_CONTACT, "test", mail="it@omsorgvast.example.invalid")
        roles.grant(session, EKU_HSA_ID, EKU_ADMIN, "test")
    return app


@pytest.fixture
def it_contact(idp: IdpUnderTest, app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        log_in(idp, client, "erik", choose=IT_HSA_ID)
        yield client


@pytest.fixture
def eku(idp: IdpUnderTest, app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        log_in(idp, client, "anna")
        yield client


def order_form(client: TestClient, n: int, **changes: str) -> dict[str, str]:
    return {
        "csrf": csrf_of(client.get("/bestallningar").text),
        "card_issuer": "Inera AB",
        "card_number": f"9752 0000 0000 0000 {n:03d}",
        "valid_to": IN_A_YEAR,
        "given_name": "Fatima",
        "surname": "Fors",
        "mail": f"fatima{n}@omsorgvast.example.invalid",
        "windows_account": f"OMSORGVAST\\fatima{n}",
        **changes,
    }


def test_login_shows_the_roles(it_contact: TestClient, eku: TestClient) -> None:
    start = it_contact.get("/")
    assert 'id="nav-orders"' in start.text and 'id="nav-eku"' not in start.text
    assert IT_HSA_ID in start.text
    assert 'id="nav-eku"' in eku.get("/").text
    # Neither may use the other's pages.
    assert reason_code(it_contact.get("/eku").text) == "not_allowed"
    assert it_contact.get("/eku").status_code == 403
    assert reason_code(eku.get("/bestallningar").text) == "not_allowed"


def test_not_logged_in_is_sent_to_log_in(app) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        page = client.get("/bestallningar")
        assert page.status_code == 401 and reason_code(page.text) == "login_required"
        assert 'id="login"' in client.get("/").text


def test_order_form_and_its_refusals(it_contact: TestClient) -> None:
    placed = it_contact.post("/bestallningar", data=order_form(it_contact, 1))
    assert placed.status_code == 200, placed.text
    assert 'id="placed"' in placed.text and "9752000000000000001" in placed.text
    bad = it_contact.post("/bestallningar", data=order_form(it_contact, 2, card_number="12 34"))
    assert bad.status_code == 400 and reason_code(bad.text) == "card_number_format"
    # The form keeps what was typed.
    assert 'value="fatima2@omsorgvast.example.invalid"' in bad.text
    twice = it_contact.post("/bestallningar", data=order_form(it_contact, 1, mail="x@y.example"))
    assert reason_code(twice.text) == "card_already_ordered"
    past = it_contact.post("/bestallningar", data=order_form(it_contact, 3, valid_to="2020-01-01"))
    assert reason_code(past.text) == "valid_to_past"
    forged = order_form(it_contact, 4)
    forged["csrf"] = "not-the-token-of-this-session"
    assert reason_code(it_contact.post("/bestallningar", data=forged).text) == "csrf"


def csv_rows(count: int, start: int = 1) -> str:
    lines = ["card_issuer,card_number,valid_to,given_name,surname,mail,windows_account"]
    for n in range(start, start + count):
        lines.append(
            f"Inera AB,9752{n:015d},{IN_A_YEAR},Person,Nummer{n},p{n}@omsorgvast.example.invalid,"
            f"OMSORGVAST\\p{n}"
        )
    return "\r\n".join(lines) + "\r\n"


def import_csv(client: TestClient, text: str) -> str:
    csrf = csrf_of(client.get("/bestallningar").text)
    sent = client.post(
        "/bestallningar/import",
        data={"csrf": csrf},
        files={"file": ("staff.csv", text.encode("utf-8"), "text/csv")},
    )
    assert sent.status_code == 303, sent.text
    progress_url = sent.headers["location"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page = client.get(progress_url)
        assert page.status_code == 200
        assert 'id="import-progress"' in page.text
        if 'http-equiv="refresh"' not in page.text:
            return page.text
        time.sleep(0.1)
    raise AssertionError("the import did not finish")


def test_csv_for_300_employees_with_progress(it_contact: TestClient) -> None:
    started = time.monotonic()
    page = import_csv(it_contact, csv_rows(300))
    elapsed = time.monotonic() - started
    assert 'id="import-done"' in page, page
    assert '<strong id="placed-count">300</strong>' in page
    assert 'value="100"' in page
    listed = it_contact.get("/bestallningar").text
    assert listed.count("data-order=") == 300
    print(f"CSV import of 300 orders through the page: {elapsed:.2f} s")


def test_csv_with_bad_lines_imports_nothing(it_contact: TestClient) -> None:
    lines = csv_rows(5).split("\r\n")
    lines[2] = lines[2].replace("9752000000000000002", "12")  # line 3: bad card number
    lines[4] = lines[4].replace(IN_A_YEAR, "1999-12-31")  # line 5: date in the past
    page = import_csv(it_contact, "\r\n".join(lines))
    assert 'id="import-refused"' in page
    assert re.findall(r'data-line="(\d+)" data-reason="([a-z_]+)"', page) == [
        ("3", "card_number_format"),
        ("5", "valid_to_past"),
    ]
    assert "data-order=" not in it_contact.get("/bestallningar").text


def test_eku_registers_confirms_forwards_and_mails_go_out(
    it_contact: TestClient, eku: TestClient, sink: SmtpSink
) -> None:
    it_contact.post("/bestallningar", data=order_form(it_contact, 7))
    listed = eku.get("/eku").text
    order_id = re.search(r'data-order="(\d+)"', listed).group(1)
    version = re.search(r'name="version" value="(\d+)"', listed).group(1)
    csrf = csrf_of(listed)
    registered = eku.post(f"/eku/{order_id}/registrera", data={"csrf": csrf, "version": version})
    assert registered.status_code == 200, registered.text
    case_number = re.search(r'id="case-number">([^<]+)<', registered.text).group(1)
    assert case_number.startswith(f"EKU-{today().year}-")
    # A second administrator who saw the same version is told someone else got there first.
    stale = eku.post(f"/eku/{order_id}/registrera", data={"csrf": csrf, "version": version})
    assert stale.status_code == 409 and reason_code(stale.text) == "concurrent_change"
    version = re.search(r'name="version" value="(\d+)"', registered.text).group(1)
    confirmed = eku.post(f"/eku/{order_id}/bekrafta", data={"csrf": csrf, "version": version})
    hsa_id = re.search(r'id="allocated-hsa-id">([^<]+)<', confirmed.text).group(1)
    assert re.fullmatch(r"SE2120001355-U\d{6}", hsa_id)
    version = re.search(r'name="version" value="(\d+)"', confirmed.text).group(1)
    forwarded = eku.post(f"/eku/{order_id}/vidarebefordra", data={"csrf": csrf, "version": version})
    assert 'id="done"' in forwarded.text
    to_contact = sink.wait_for("it@omsorgvast.example.invalid")[0]
    assert case_number in to_contact["Subject"] and hsa_id in to_contact.get_content()
    to_recipient = sink.wait_for("fatima7@omsorgvast.example.invalid")[0]
    assert f"{BASE}/hamta/" in to_recipient.get_content()
    # The outbox shows both mails as sent; the recipient's link is not shown to anyone else.
    deadline = time.monotonic() + 10  # the sender marks a mail sent after the server took it
    while (outbox := eku.get("/utkorg").text).count('data-sent="yes"') < 2:
        assert time.monotonic() < deadline, outbox
        time.sleep(0.1)
    mail_id = re.search(r'href="/utkorg/(\d+)">Ditt certifikat', outbox).group(1)
    shown = eku.get(f"/utkorg/{mail_id}").text
    assert "Sätt i kortet" in shown and "/hamta/… (dold / hidden)" in shown
    assert to_recipient.get_content().split("/hamta/")[1].split()[0] not in shown
    assert it_contact.get("/utkorg").status_code == 403
    # The IT contact sees the case number and HSA-ID on the order.
    mine = it_contact.get("/bestallningar").text
    assert case_number in mine and hsa_id in mine


def test_readiness_board_per_provider_and_for_the_city(
    it_contact: TestClient, eku: TestClient
) -> None:
    for n in (11, 12, 13):
        it_contact.post("/bestallningar", data=order_form(it_contact, n))
    listed = eku.get("/eku").text
    order_id = re.search(r'data-order="(\d+)"', listed).group(1)
    form = listed[listed.index(f'action="/eku/{order_id}/registrera"') :]
    version = re.search(r'name="version" value="(\d+)"', form).group(1)
    eku.post(f"/eku/{order_id}/registrera", data={"csrf": csrf_of(listed), "version": version})
    board = it_contact.get("/beredskap").text
    assert '<strong id="total-count">3</strong>' in board
    assert '<strong id="ready-count">0</strong>' in board
    assert '<span data-step="1">3 / 3</span>' in board
    assert '<span data-step="3">1 / 3</span>' in board
    assert '<span data-step="4">0 / 3</span>' in board
    assert 'id="providers"' not in board  # the city-wide table is the EKU administrator's
    assert "Certifikat på kortet" in board  # named as missing
    city = eku.get("/beredskap").text
    assert (
        '<tr data-provider="5567000010"><td><code>5567000010</code></td><td>3</td><td>0</td>'
        in city
    )
    exported = it_contact.get("/beredskap.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    lines = exported.text.strip().split("\r\n")
    assert lines[0] == (
        "provider_org,given_name,surname,mail,card_number,case_number,hsa_id,"
        "steps_done,ready,missing"
    )
    assert len(lines) == 4
    registered = next(line for line in lines if ",EKU-" in line)
    assert registered.endswith(",3,no,4;5;6;7;8")


def test_csv_export_defuses_formulas(it_contact: TestClient) -> None:
    it_contact.post("/bestallningar", data=order_form(it_contact, 21, given_name="=HYPERLINK(1)"))
    exported = it_contact.get("/beredskap.csv").text
    assert ",'=HYPERLINK(1)," in exported


def test_an_it_contact_cannot_act_on_another_providers_order(
    app, it_contact: TestClient, eku: TestClient
) -> None:  # type: ignore[no-untyped-def]
    with app.state.database.session() as session:
        other = orders.place_order(
            session,
            OrderInput(
                "Inera AB", "9752000000000000999", IN_A_YEAR, "Olle", "Annan", "o@x.example"
            ),
            "5590000001",
            "SE5590000001-X0001",
        )
        other_id = other.id
    assert "9752000000000000999" not in it_contact.get("/bestallningar").text
    csrf = csrf_of(it_contact.get("/bestallningar").text)
    for action in ("treserva", "arende"):
        answer = it_contact.post(
            f"/bestallningar/{other_id}/{action}", data={"csrf": csrf, "version": "1"}
        )
        assert answer.status_code == 404 and reason_code(answer.text) == "order_not_found"
    # The city's board shows it; the provider's does not.
    assert "Olle Annan" in eku.get("/beredskap").text
    assert "Olle Annan" not in it_contact.get("/beredskap").text
    missing = eku.post(
        "/eku/99999/registrera", data={"csrf": csrf_of(eku.get("/eku").text), "version": "1"}
    )
    assert reason_code(missing.text) == "order_not_found"

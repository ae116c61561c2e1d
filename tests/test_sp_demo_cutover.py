"""Rehearsing the cut-over from Windows login to SITHS login in mock Treserva, over real sockets.

Time moves forward by restarting ``sp-demo serve`` on the same database with a cut-over date
after today, then one that has passed (``SP_DEMO_CUTOVER_DATE``): no clock is faked. The
administrator logs in through the IdP with her card like everyone else.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from sp_demo.db import LOGIN_WINDOWS, Database, User
from sp_demo.demo_data import demo_accounts
from tests.conftest import IdpUnderTest
from tests.helpers.idp_process import DIRECTORY_CSV
from tests.helpers.support import browser, reason_code
from tests.helpers.treserva import (
    ANNA,
    BERTIL,
    Treserva,
    csrf_of,
    log_in_with_card,
    make_treserva,
    permissions_shown,
    today,
    windows_log_in,
)

DEMO_ACCOUNTS = 300


def user_id_of(client: httpx.Client, treserva: Treserva, query: str) -> int:
    page = client.get(f"{treserva.base_url}/admin/users", params={"q": query})
    assert page.status_code == 200, page.text
    ids = re.findall(r'href="/admin/users/(\d+)"', page.text)
    assert len(ids) == 1, page.text
    return int(ids[0])


def admin_post(client: httpx.Client, treserva: Treserva, user_id: int, action: str, **data: str):
    page = client.get(f"{treserva.base_url}/admin/users/{user_id}")
    return client.post(
        f"{treserva.base_url}/admin/users/{user_id}/{action}",
        data={"csrf": csrf_of(page.text), **data},
    )


# --- the rehearsal ------------------------------------------------------------------------------


def test_rehearsal_windows_login_then_registration_then_siths_only(
    idp: IdpUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    treserva = make_treserva(idp, tmp_path_factory.mktemp("rehearsal"), "treserva-rehearsal")
    treserva.cli("users", "grant-admin", ANNA)
    # Bertil's account as it was before SITHS: no HSA-ID, permissions on the Windows login.
    database = Database(f"sqlite:///{treserva.database}")
    with database.session() as session:
        bertil = session.scalars(select(User).where(User.hsa_id == BERTIL)).one()
        bertil.hsa_id = None
        for permission in bertil.permissions:
            permission.login = LOGIN_WINDOWS
    database.dispose()

    # Each phase's browsers are closed before its server stops: uvicorn otherwise waits for
    # the TLS goodbye of idle connections. Bertil's cookies carry over, as in a real browser.
    with (
        treserva.running(today() + dt.timedelta(days=30)),
        browser(idp.ca_file, idp.card("bertil")) as bertil,
        browser(idp.ca_file, idp.card("anna")) as admin,
    ):
        start = bertil.get(f"{treserva.base_url}/")
        assert 'id="windows-login"' in start.text
        page = windows_log_in(bertil, treserva, r"GBGSTAD\bertil.berg")
        assert page.status_code == 200, page.text
        assert '<dd id="login-method">Windows</dd>' in page.text
        windows_permissions = permissions_shown(page.text)
        assert windows_permissions == [("undersköterska", "Äldreboende Guldheden")]

        # The administrator: through the IdP with her card, straight back to /admin.
        overview = log_in_with_card(admin, treserva, "/admin")
        assert overview.status_code == 200, overview.text
        assert str(overview.url).endswith("/admin")
        bertil_id = user_id_of(admin, treserva, "bertil")
        registered = admin_post(admin, treserva, bertil_id, "hsa-id", hsa_id=BERTIL)
        assert registered.status_code == 303, registered.text
        moved = admin_post(admin, treserva, bertil_id, "move")
        assert moved.status_code == 303, moved.text
        user_page = admin.get(f"{treserva.base_url}/admin/users/{bertil_id}").text
        assert f'<code id="user-hsa-id">{BERTIL}</code>' in user_page
        siths_part = user_page.split("siths-permissions")[1]
        assert "undersköterska, Äldreboende Guldheden" in siths_part

        trail = admin.get(f"{treserva.base_url}/admin/audit").text
        who = "SE2120001355-E0001 (Anna Andersson)"
        for action in ("register_hsa_id", "move_permissions"):
            assert re.search(
                rf'<td class="actor">{re.escape(who)}</td><td class="action"><code>{action}'
                r'</code></td><td class="account">GBGSTAD\\bertil.berg</td>',
                trail,
            ), trail
        cookies = httpx.Cookies(bertil.cookies)

    with (
        treserva.running(today()),
        browser(idp.ca_file, idp.card("bertil")) as bertil,
    ):
        bertil.cookies = cookies
        # The Windows session from before the cut-over is over, and the form is gone.
        me = bertil.get(f"{treserva.base_url}/me")
        assert me.headers["location"] == "/windows-login"
        refused = windows_log_in(bertil, treserva, r"GBGSTAD\bertil.berg")
        assert refused.status_code == 410
        assert reason_code(refused.text) == "windows_login_closed"
        assert "bara att logga in i Treserva med SITHS-kort" in refused.text
        posted = bertil.post(
            f"{treserva.base_url}/windows-login",
            data={"windows_account": r"GBGSTAD\bertil.berg", "password": "windows"},
        )
        assert posted.status_code == 410

        page = log_in_with_card(bertil, treserva)
        assert page.status_code == 200, page.text
        assert '<dd id="login-method">SITHS</dd>' in page.text
        assert f'<code id="hsa-id">{BERTIL}</code>' in page.text
        assert permissions_shown(page.text) == windows_permissions


# --- the administrator page on a demo data set ----------------------------------------------


@pytest.fixture(scope="module")
def demo_treserva(
    idp: IdpUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Treserva]:
    work = tmp_path_factory.mktemp("treserva-demo")
    treserva = make_treserva(idp, work, "treserva-demo")
    generated = work / "generated-directory.csv"
    treserva.cli(
        "users", "generate", "--count", str(DEMO_ACCOUNTS), "--idp-directory-out", str(generated)
    )
    treserva.cli("users", "grant-admin", ANNA)
    # What the IdP knows: its own directory plus the generated people it is told about.
    directory = work / "idp-directory.csv"
    extra = generated.read_text(encoding="utf-8").split("\n", 1)[1]
    directory.write_text(DIRECTORY_CSV + extra, encoding="utf-8")
    treserva.idp_directory_file = directory
    with treserva.running(dt.date(2024, 3, 1)):
        yield treserva


@pytest.fixture(scope="module")
def admin(idp: IdpUnderTest, demo_treserva: Treserva) -> Iterator[httpx.Client]:
    with browser(idp.ca_file, idp.card("anna")) as client:
        assert log_in_with_card(client, demo_treserva, "/admin").status_code == 200
        yield client


def expected_findings() -> dict[str, set[str]]:
    """What the readiness report must list: the generator's rules, plus the seeded Doris."""
    expected: dict[str, set[str]] = {r"GBGSTAD\doris.dahl": {"no_hsa_id", "permissions_not_moved"}}
    for account in demo_accounts(DEMO_ACCOUNTS):
        reasons = set()
        if account.hsa_id is None:
            reasons.add("no_hsa_id")
        elif not account.known_at_idp:
            reasons.add("hsa_id_unknown_at_idp")
        if not account.moved:
            reasons.add("permissions_not_moved")
        if reasons:
            expected[account.windows_account] = reasons
    return expected


def test_readiness_report_on_a_demo_data_set(demo_treserva: Treserva, admin: httpx.Client) -> None:
    expected = expected_findings()
    page = admin.get(f"{demo_treserva.base_url}/admin/readiness")
    assert page.status_code == 200
    total = DEMO_ACCOUNTS + 5
    assert f'<dd id="count-total">{total}</dd>' in page.text
    assert f'<dd id="count-not-ready">{len(expected)}</dd>' in page.text
    assert f'<dd id="count-ready">{total - len(expected)}</dd>' in page.text
    for reason in ("no_hsa_id", "hsa_id_unknown_at_idp", "permissions_not_moved"):
        count = sum(reason in reasons for reasons in expected.values())
        assert f'<dd id="count-{reason}">{count}</dd>' in page.text
    assert page.text.count('<tr class="finding">') == len(expected)

    download = admin.get(f"{demo_treserva.base_url}/admin/readiness.csv")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert "attachment" in download.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert {row["windows_account"]: set(row["reasons"].split(";")) for row in rows} == expected
    assert all(row["description"] for row in rows)

    # The command line says the same.
    printed = demo_treserva.cli("users", "report")
    assert f"{total} accounts: {total - len(expected)} ready, {len(expected)} cannot" in printed


def test_a_non_admin_is_refused_the_admin_page(idp: IdpUnderTest, demo_treserva: Treserva) -> None:
    with browser(idp.ca_file, idp.card("bertil")) as client:
        page = log_in_with_card(client, demo_treserva, "/admin")
        assert page.status_code == 403
        assert reason_code(page.text) == "not_admin"
        for path in ("/admin/users", "/admin/readiness.csv", "/admin/export.csv", "/admin/audit"):
            assert client.get(f"{demo_treserva.base_url}{path}").status_code == 403
        refused = client.post(
            f"{demo_treserva.base_url}/admin/users/1/hsa-id",
            data={"csrf": "whatever", "hsa_id": BERTIL},
        )
        assert refused.status_code == 403
    with browser(idp.ca_file) as anonymous:
        first = anonymous.get(f"{demo_treserva.base_url}/admin")
        assert first.headers["location"] == "/login?next=/admin"


def test_an_hsa_id_cannot_be_registered_on_two_users(
    demo_treserva: Treserva, admin: httpx.Client
) -> None:
    doris = user_id_of(admin, demo_treserva, "doris")
    refused = admin_post(admin, demo_treserva, doris, "hsa-id", hsa_id=ANNA)
    assert refused.status_code == 409
    assert reason_code(refused.text) == "hsa_id_taken"
    assert r"GBGSTAD\anna.andersson" in refused.text
    page = admin.get(f"{demo_treserva.base_url}/admin/users/{doris}").text
    assert '<code id="user-hsa-id">–</code>' in page

    malformed = admin_post(admin, demo_treserva, doris, "hsa-id", hsa_id="SE2120001355E0004")
    assert malformed.status_code == 400
    assert reason_code(malformed.text) == "malformed_hsa_id"
    # Moving permissions needs an HSA-ID first.
    early = admin_post(admin, demo_treserva, doris, "move")
    assert early.status_code == 409
    assert reason_code(early.text) == "no_hsa_id"


def test_a_form_without_the_session_token_is_refused(
    demo_treserva: Treserva, admin: httpx.Client
) -> None:
    doris = user_id_of(admin, demo_treserva, "doris")
    forged = admin.post(
        f"{demo_treserva.base_url}/admin/users/{doris}/hsa-id",
        data={"csrf": "forged", "hsa_id": "SE2120001355-E0004"},
    )
    assert forged.status_code == 403
    assert reason_code(forged.text) == "csrf"


def test_a_bad_csv_upload_lists_the_bad_lines_and_changes_nothing(
    demo_treserva: Treserva, admin: httpx.Client
) -> None:
    before = admin.get(f"{demo_treserva.base_url}/admin/export.csv").content
    upload = (
        "windows_account,hsa_id\n"
        "GBGSTAD\\doris.dahl,SE2120001355-E0004\n"
        "GBGSTAD\\nobody,SE2120001355-E0777\n"
        "GBGSTAD\\bertil.berg,not-an-hsa-id\n"
    )
    form = admin.get(f"{demo_treserva.base_url}/admin/import")
    result = admin.post(
        f"{demo_treserva.base_url}/admin/import",
        data={"csrf": csrf_of(form.text)},
        files={"file": ("konton.csv", upload.encode("utf-8"), "text/csv")},
    )
    assert result.status_code == 400
    assert 'id="import-refused"' in result.text
    problems = re.findall(
        r'<td class="line">(\d+)</td>.*?<code class="code">([a-z_]+)</code>', result.text
    )
    assert problems == [("3", "unknown_account"), ("4", "malformed_hsa_id")]
    assert admin.get(f"{demo_treserva.base_url}/admin/export.csv").content == before


def test_the_export_downloads_every_account(demo_treserva: Treserva, admin: httpx.Client) -> None:
    download = admin.get(f"{demo_treserva.base_url}/admin/export.csv")
    assert download.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert len(rows) == DEMO_ACCOUNTS + 5
    anna = next(row for row in rows if row["hsa_id"] == ANNA)
    assert anna["windows_account"] == r"GBGSTAD\anna.andersson"
    assert "handläggare, Hemtjänst Centrum" in anna["permissions_siths"]

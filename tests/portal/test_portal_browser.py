"""The portal's pages in a real browser (Debian's Chromium driven by Playwright), each checked
with axe-core against WCAG 2.1 A and AA like the IdP's: the login through the IdP with a card,
the IT-kontaktperson's order form and CSV import, the EKU administrator's list and outbox with
a mail, the recipient's link page, and the readiness board. ``UPDATE_SCREENSHOTS=1`` writes
the README's screenshots (``tests/screenshots/portal-*.png``)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from portal import orders, roles
from portal.config import today
from portal.models import EKU_ADMIN, IT_CONTACT
from portal.orders import OrderInput
from tests.browser.harness import assert_accessible, new_context, screenshot
from tests.conftest import IdpUnderTest
from tests.helpers.support import free_port
from tests.portal.portal_server import PortalUnderTest, running_portal
from tests.portal.web_support import register_oidc_client

IT_HSA_ID = "SE5567000010-P0001"
EKU_HSA_ID = "SE2120001355-E0001"
README_SCREENSHOTS = ("portal-order-form", "portal-eku-list", "portal-mail", "portal-readiness")
PEOPLE = (
    ("Fatima", "Fors"),
    ("Gustav", "Gran"),
    ("Hanna", "Holm"),
    ("Ivar", "Ivarsson"),
    ("Johanna", "Jansson"),
    ("Karim", "Kaya"),
)


@pytest.fixture(scope="module")
def portal(
    idp: IdpUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PortalUnderTest]:
    port = free_port()
    secret = register_oidc_client(idp, "portal-browser", f"https://localhost:{port}")
    env = {
        "PORTAL_OIDC_ISSUER": idp.base_url,
        "PORTAL_OIDC_CLIENT_ID": "portal-browser",
        "PORTAL_OIDC_CLIENT_SECRET": secret,
    }
    with running_portal(idp, tmp_path_factory.mktemp("portal-browser"), env, port) as running:
        with running.database.session() as session:
            roles.grant(
                session, IT_HSA_ID, IT_CONTACT, "test", mail="it@omsorgvast.example.invalid"
            )
            roles.grant(session, EKU_HSA_ID, EKU_ADMIN, "test")
        seed_orders(running)
        yield running


def seed_orders(portal: PortalUnderTest) -> None:
    """Invented orders at every step from 1 to 5, so the pages show something to look at."""
    valid_to = (today() + dt.timedelta(days=365)).isoformat()
    with portal.database.session() as session:
        for n, (given, surname) in enumerate(PEOPLE, start=1):
            order = orders.place_order(
                session,
                OrderInput(
                    "Inera AB",
                    f"9752{n + 300:015d}",
                    valid_to,
                    given,
                    surname,
                    f"{given}.{surname}@omsorgvast.example.invalid".lower(),
                    f"OMSORGVAST\\{given}.{surname}".lower(),
                ),
                "5567000010",
                IT_HSA_ID,
            )
            if n >= 3:
                order = orders.register_case(session, order.id, order.version, EKU_HSA_ID)
            if n >= 4:
                order = orders.confirm_order(session, order.id, order.version, EKU_HSA_ID)
            if n >= 5:
                orders.forward_order(session, portal.settings, order.id, order.version, EKU_HSA_ID)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("portal-screenshots")


def logged_in(
    chromium: Browser, idp: IdpUnderTest, portal: PortalUnderTest, card: str, choose: str | None
) -> Page:
    context = new_context(
        chromium, card=idp.card(card), origins=(idp.base_url, idp.cert_login_url, portal.base_url)
    )
    page = context.new_page()
    page.goto(f"{portal.base_url}/")
    assert_accessible(page, "the portal's start page")
    page.locator("#login").click()
    page.get_by_role("link", name="SITHS eID på denna enhet").click()
    if choose is not None:
        expect(page.get_by_role("heading", level=1)).to_have_text("Välj tjänste-id")
        page.locator(f"input[value='{choose}']").check()
        page.locator("#choose").click()
    page.wait_for_url(f"{portal.base_url}/", timeout=20_000)
    expect(page.locator("#who")).to_be_visible()
    assert_accessible(page, "the portal's start page, logged in")
    return page


def test_it_contact_pages(
    chromium: Browser, idp: IdpUnderTest, portal: PortalUnderTest, shots: Path, tmp_path: Path
) -> None:
    page = logged_in(chromium, idp, portal, "erik", IT_HSA_ID)
    page.locator("#nav-orders").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Beställ certifikat och HSA-ID")
    assert_accessible(page, "the order form")
    screenshot(page, "portal-order-form", shots)
    # A bad card number: the answer is on the page, the form keeps what was typed.
    page.get_by_label("Kortnummer").fill("1234")
    page.get_by_label("Certifikatet giltigt till").fill(
        (today() + dt.timedelta(days=200)).isoformat()
    )
    page.get_by_label("Mottagarens förnamn").fill("Lena")
    page.get_by_label("Mottagarens efternamn").fill("Lund")
    page.get_by_label("Mottagarens e-post").fill("lena.lund@omsorgvast.example.invalid")
    page.locator("#place-order").click()
    expect(page.locator("#reason")).to_have_text("card_number_format")
    expect(page.get_by_label("Mottagarens förnamn")).to_have_value("Lena")
    assert_accessible(page, "the order form with a refusal")
    # A CSV file with progress.
    csv_file = tmp_path / "personal.csv"
    rows = ["card_issuer,card_number,valid_to,given_name,surname,mail,windows_account"]
    valid_to = (today() + dt.timedelta(days=300)).isoformat()
    rows += [
        f"Inera AB,9752{n + 600:015d},{valid_to},Person,Nummer{n},p{n}@omsorgvast.example.invalid,"
        for n in range(1, 3)
    ]
    csv_file.write_text("\r\n".join(rows) + "\r\n", encoding="utf-8")
    page.locator("#file").set_input_files(str(csv_file))
    page.locator("#import").click()
    expect(page.locator("#import-done")).to_be_visible(timeout=20_000)
    expect(page.locator("#placed-count")).to_have_text("2")
    assert_accessible(page, "the CSV import's progress page")
    screenshot(page, "portal-import", shots)
    page.goto(f"{portal.base_url}/beredskap")
    expect(page.locator("#total-count")).to_have_text(str(len(PEOPLE) + 2))
    assert_accessible(page, "the provider's readiness board")
    page.context.close()


def test_eku_pages_mail_board_and_link(
    chromium: Browser, idp: IdpUnderTest, portal: PortalUnderTest, shots: Path
) -> None:
    page = logged_in(chromium, idp, portal, "anna", None)
    page.locator("#nav-eku").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Inkomna beställningar")
    assert_accessible(page, "the EKU administrator's list")
    screenshot(page, "portal-eku-list", shots)
    first = page.locator("button[id^='registrera-']").first
    first.click()
    expect(page.locator("#case-number")).to_have_text(re.compile(r"EKU-\d{4}-\d{5}"))
    assert_accessible(page, "the receipt with the case number")
    page.locator("#nav-outbox").click()
    expect(page.locator("tr[data-mail]").first).to_be_visible()
    assert_accessible(page, "the outbox")
    page.get_by_role(
        "link", name="Ditt certifikat från Göteborgs Stad är klart att hämta"
    ).first.click()
    expect(page.locator("#mail-body")).to_contain_text("Sätt i kortet i kortläsaren")
    assert_accessible(page, "a mail")
    screenshot(page, "portal-mail", shots)
    page.locator("#nav-board").click()
    expect(page.locator("#providers")).to_be_visible()
    assert_accessible(page, "the city's readiness board")
    screenshot(page, "portal-readiness", shots)
    # The recipient's link page (no login needed: the link is the key) and a used-up link.
    link = re.search(
        r"https://\S+/hamta/\S+",
        portal.sink.wait_for("johanna.jansson@omsorgvast.example.invalid")[0].get_content(),
    ).group(0)
    page.goto(link)
    expect(page.locator("#card-number")).to_have_text("9752000000000000305")
    assert_accessible(page, "the recipient's link page")
    screenshot(page, "portal-enrol", shots)
    page.goto(link[:-6] + "xxxxxx")
    expect(page.locator("#reason")).to_have_text("link_unknown")
    assert_accessible(page, "the error page")
    page.context.close()

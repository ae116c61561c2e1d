"""Issue 9: both login methods in a real browser, from mock Treserva and back, accessibly.

Debian's Chromium, driven by Playwright, against the session's IdP (``conftest``) and a mock
Treserva running as its own process (``sp-demo serve``). Every login starts on Treserva's start
page and must end on Treserva's "Min sida" showing the person's name, HSA-ID and permissions;
a test whose browser never gets there fails. "SITHS eID på denna enhet" presents a card's
client certificate in the TLS handshake; "SITHS eID på annan enhet" reads the QR code off the
screen's pixels and hands it to the simulated SITHS eID app, whose card is a SoftHSM2 token.
Each page a user meets is checked with axe-core (WCAG 2.1 A and AA) and must have no
violations. See :mod:`tests.browser.harness` for how the browser trusts the test TLS CA.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from playwright.sync_api import Browser, BrowserContext, Page, expect

from idp.cli import main as idp_command
from siths_testkit.app_simulator import SithsEidApp, SoftHsmCard
from siths_testkit.pki import issue_card
from tests.browser.harness import (
    PHONE,
    SCREENSHOTS,
    assert_accessible,
    assert_focus_visible,
    axe_violations,
    focused_matches,
    new_context,
    read_qr_on_screen,
    screenshot,
    tab_to,
)
from tests.conftest import IdpUnderTest
from tests.helpers.token_cards import TokenLab
from tests.helpers.treserva import Treserva

REPO_ROOT = Path(__file__).resolve().parent.parent
ANNA = "SE2120001355-E0001"
ERIK, ERIK_PRIVATE = "SE2120001355-E0005", "SE5567000010-P0001"
STATUS_START = "Starta SITHS eID-appen och skanna QR-koden."
STATUS_SIGN = "Skriv in din säkerhetskod i appen."
# The README shows these; the tests make them (UPDATE_SCREENSHOTS=1 writes them there).
README_SCREENSHOTS = (
    "login",
    "login-phone",
    "qr",
    "choose-hsa-id",
    "error",
    "treserva-logged-in",
)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def lab(idp: IdpUnderTest, tmp_path_factory: pytest.TempPathFactory) -> TokenLab:
    return TokenLab(idp.pki, tmp_path_factory.mktemp("softhsm-browser"))


@pytest.fixture(scope="module")
def anna_token(lab: TokenLab) -> SoftHsmCard:
    return lab.card("anna-browser", ANNA, "Anna", "Andersson")


@pytest.fixture
def app(idp: IdpUnderTest, anna_token: SoftHsmCard) -> Iterator[SithsEidApp]:
    with SithsEidApp(idp.base_url, idp.ca_file, anna_token) as simulated:
        yield simulated


class BrowserSession:
    """One browser profile at one viewport, with or without a card, and where it can go."""

    def __init__(
        self,
        chromium: Browser,
        idp: IdpUnderTest,
        treserva: Treserva,
        card: tuple[Path, Path] | None = None,
        viewport: dict[str, int] | None = None,
    ) -> None:
        self.idp = idp
        self.treserva = treserva
        self.context: BrowserContext = new_context(
            chromium,
            card=card,
            origins=(idp.base_url, idp.cert_login_url, treserva.base_url),
            viewport=viewport,
        )
        self.page: Page = self.context.new_page()

    def close(self) -> None:
        self.context.close()

    def open_treserva(self) -> Page:
        self.page.goto(f"{self.treserva.base_url}/")
        expect(self.page).to_have_title(re.compile("Treserva"))
        return self.page

    def click_log_in_at_treserva(self) -> Page:
        """From Treserva's start page to the IdP's "Välj legitimeringsmetod"."""
        self.page.get_by_role("link", name="Logga in").click()
        self.expect_at_chooser()
        return self.page

    def expect_at_chooser(self) -> None:
        self.page.wait_for_url(f"{self.idp.base_url}/login?**")
        expect(self.page.get_by_role("heading", level=2)).to_contain_text(
            re.compile("Välj legitimeringsmetod|Choose how to identify yourself")
        )

    def expect_logged_in_at_treserva(
        self, name: str, hsa_id: str, permissions: list[tuple[str, str]]
    ) -> None:
        """Back at Treserva's "Min sida", logged in as ``name`` with ``hsa_id``."""
        self.page.wait_for_url(f"{self.treserva.base_url}/me", timeout=20_000)
        expect(self.page.locator("#name")).to_have_text(name)
        expect(self.page.locator("#hsa-id")).to_have_text(hsa_id)
        expect(self.page.locator("#login-method")).to_have_text("SITHS")
        rows = self.page.locator("table.permissions tbody tr")
        shown = [tuple(row.locator("td").all_inner_texts()) for row in rows.all()]
        assert shown == permissions

    def expect_not_logged_in_at_treserva(self) -> None:
        """Treserva's "Min sida" sends this browser back to the start page: nobody logged in."""
        self.page.goto(f"{self.treserva.base_url}/me")
        self.page.wait_for_url(f"{self.treserva.base_url}/")
        expect(self.page.locator("#login")).to_be_visible()
        expect(self.page.locator("#hsa-id")).to_have_count(0)


@pytest.fixture
def session_factory(
    chromium: Browser, idp: IdpUnderTest, treserva: Treserva
) -> Iterator[Callable[..., BrowserSession]]:
    opened: list[BrowserSession] = []

    def open_session(**options) -> BrowserSession:
        session = BrowserSession(chromium, idp, treserva, **options)
        opened.append(session)
        return session

    yield open_session
    for session in opened:
        session.close()


# --- SITHS eID på denna enhet ---------------------------------------------------------------


def test_card_on_this_device_logs_in_to_treserva(
    session_factory, idp: IdpUnderTest, shots: Path
) -> None:
    browser = session_factory(card=idp.card("anna"))
    page = browser.open_treserva()
    assert_accessible(page, "mock Treserva's start page")
    browser.click_log_in_at_treserva()
    expect(page.locator("html")).to_have_attribute("lang", "sv")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Jag legitimerar mig hos Göteborgs Stads Åtkomsttjänst"
    )
    expect(page.locator(".lead")).to_contain_text("Treserva (demo)")
    assert_accessible(page, "the login chooser")
    screenshot(page, "login", shots)
    # The chooser arrives as the answer to the AuthnRequest; the address bar shows its own
    # address, so a reload shows the same login's chooser (the request is not sent again).
    chooser_url = page.url
    page.reload()
    browser.expect_at_chooser()
    assert page.url == chooser_url

    page.get_by_role("link", name="SITHS eID på denna enhet").click()
    browser.expect_logged_in_at_treserva(
        "Anna Andersson",
        ANNA,
        [("handläggare", "Hemtjänst Centrum"), ("handläggare", "Hemtjänst Majorna")],
    )
    assert_accessible(page, "mock Treserva's Min sida")
    screenshot(page, "treserva-logged-in", shots)


# --- SITHS eID på annan enhet ---------------------------------------------------------------


def open_qr_page(browser: BrowserSession) -> Page:
    browser.open_treserva()
    page = browser.click_log_in_at_treserva()
    page.get_by_role("link", name="SITHS eID på annan enhet").click()
    page.wait_for_url(f"{browser.idp.base_url}/login/other-device?**")
    expect(page.locator("#qr svg")).to_be_visible()
    return page


def test_app_on_another_device_logs_in_to_treserva(
    session_factory, app: SithsEidApp, shots: Path
) -> None:
    browser = session_factory()
    page = open_qr_page(browser)
    status = page.locator("#status")
    expect(status).to_have_text(STATUS_START)
    expect(status).to_have_attribute("aria-live", "polite")
    expect(status).to_have_attribute("role", "status")
    # The QR code's text alternative, and a QR code large enough to scan from a screen.
    qr = page.get_by_role("img", name=re.compile("QR-kod att skanna med SITHS eID-appen"))
    expect(qr).to_be_visible()
    box = page.locator("#qr svg").bounding_box()
    assert box is not None and box["width"] >= 300 and box["height"] >= 300, box
    assert_accessible(page, "the QR page")
    screenshot(page, "qr", shots)

    # The phone's camera: the QR code as the screen shows it, from its pixels.
    first = read_qr_on_screen(page)
    assert first.startswith("sithseid.")
    # The code is animated: the page swaps in a new one every second.
    drawn = page.locator("#qr").inner_html()
    page.wait_for_function(
        "(drawn) => document.getElementById('qr').innerHTML !== drawn", arg=drawn, timeout=5_000
    )
    scanned = read_qr_on_screen(page)
    assert scanned != first and scanned.startswith("sithseid.")
    scan = app.scan(scanned)
    assert scan.user_visible_data.startswith("Inloggning till Treserva (demo)")
    # The browser learns that the app has the order, and says so in its live region.
    expect(status).to_have_text(STATUS_SIGN, timeout=5_000)
    expect(page.locator("#qr")).to_be_hidden()

    app.sign(scan)
    # Nobody touches the browser: it moves on by itself, through the IdP, to Treserva.
    browser.expect_logged_in_at_treserva(
        "Anna Andersson",
        ANNA,
        [("handläggare", "Hemtjänst Centrum"), ("handläggare", "Hemtjänst Majorna")],
    )


def test_expired_order_says_so_and_starts_again(
    session_factory, idp: IdpUnderTest, app: SithsEidApp
) -> None:
    browser = session_factory()
    page = open_qr_page(browser)
    ref = re.search(r"ref=([^&]+)", page.url).group(1)
    status = page.locator("#status")
    expect(status).to_have_text(STATUS_START)
    with sqlite3.connect(idp.database_file()) as connection:
        expired = connection.execute(
            "UPDATE orders SET expires_at = '2020-01-01 00:00:00.000000'"
            " WHERE pending_login_id = ?",
            (ref,),
        )
        assert expired.rowcount == 1
    # The page's next poll finds the order expired: the live region says so, in place.
    expect(status).to_contain_text("Tiden för inloggningen gick ut", timeout=5_000)
    expect(status).to_have_class(re.compile("status-failed"))
    expect(page.locator("#qr")).to_be_hidden()
    restart = page.get_by_role("link", name="Starta om")
    expect(restart).to_be_visible()
    expect(page.locator("#autostart")).to_be_hidden()
    assert_accessible(page, "the QR page after the order expired")

    restart.click()
    expect(status).to_have_text(STATUS_START)
    scan = app.scan(read_qr_on_screen(page))
    app.sign(scan)
    browser.expect_logged_in_at_treserva(
        "Anna Andersson",
        ANNA,
        [("handläggare", "Hemtjänst Centrum"), ("handläggare", "Hemtjänst Majorna")],
    )


# --- by keyboard only, with the choice of tjänste-id -----------------------------------------


def test_keyboard_only_login_with_a_choice_of_tjanste_id(
    session_factory, idp: IdpUnderTest, shots: Path
) -> None:
    """Erik Ek's card holds two organisations' HSA-IDs; he picks one without a mouse."""
    browser = session_factory(card=idp.card("erik"))
    page = browser.open_treserva()
    tab_to(page, "#login")
    page.keyboard.press("Enter")
    browser.expect_at_chooser()

    # The first Tab reaches the skip link, which moves the focus to the content.
    page.keyboard.press("Tab")
    assert focused_matches(page, ".skip-link")
    assert_focus_visible(page)
    assert page.locator(".skip-link").bounding_box()["x"] >= 0  # shown when focused
    page.keyboard.press("Enter")
    assert focused_matches(page, "main")
    tab_to(page, "#method-this-device")
    page.keyboard.press("Enter")

    page.wait_for_url(f"{idp.base_url}/login/continue?**")
    expect(page.get_by_role("heading", level=1)).to_have_text("Välj tjänste-id")
    radios = page.get_by_role("radio")
    expect(radios).to_have_count(2)
    expect(page.get_by_role("radio", checked=True)).to_have_count(0)  # no guess
    expect(page.get_by_role("group", name="Tjänste-id")).to_be_visible()
    assert_accessible(page, "the tjänste-id choice")
    screenshot(page, "choose-hsa-id", shots)

    tab_to(page, "input[name=hsa_id]")
    assert focused_matches(page, f"input[value='{ERIK}']")
    page.keyboard.press("Space")
    expect(page.locator(f"input[value='{ERIK}']")).to_be_checked()
    page.keyboard.press("ArrowDown")  # within a radio group the arrows move the choice
    expect(page.locator(f"input[value='{ERIK_PRIVATE}']")).to_be_checked()
    tab_to(page, "#choose")
    page.keyboard.press("Enter")

    browser.expect_logged_in_at_treserva(
        "Erik Ek", ERIK_PRIVATE, [("utförare", "Omsorgsbolaget Väst")]
    )


# --- the error pages a user can meet --------------------------------------------------------


def revoked_card(idp: IdpUnderTest, out_dir: Path) -> tuple[Path, Path]:
    """A registered person's card, revoked (``idp card revoke``) before its first use."""
    hsa_id = "SE2120001355-R0901"
    # The `idp` command in this process: a subprocess costs seconds of imports.
    added = CliRunner().invoke(
        idp_command,
        ["people", "add", "--hsa-id", hsa_id, "--given-name", "Rut", "--surname", "Spärr",
         "--organisation", "Göteborgs Stad"],
        env=idp.env,
        catch_exceptions=False,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    issued = issue_card(idp.pki, hsa_id=hsa_id, given_name="Rut", surname="Spärr", out_dir=out_dir)
    revoked = CliRunner().invoke(
        idp_command,
        ["card", "revoke", hsa_id, "--reason", "keyCompromise", "--pki", str(idp.pki.directory)],
        catch_exceptions=False,
    )
    assert revoked.exit_code == 0, revoked.output
    return issued.cert, issued.key


@pytest.mark.parametrize(
    ("card", "reason", "title"),
    [
        ("forged", "untrusted_issuer", "Kortet godkänns inte"),
        ("revoked", "certificate_revoked", "Ditt kort är spärrat"),
        ("doris", "unknown_person", "Ditt HSA-id är inte registrerat"),
    ],
)
def test_card_refused_shows_an_error_page_and_nobody_is_logged_in(
    session_factory,
    idp: IdpUnderTest,
    tmp_path: Path,
    shots: Path,
    card: str,
    reason: str,
    title: str,
) -> None:
    files = revoked_card(idp, tmp_path) if card == "revoked" else idp.card(card)
    browser = session_factory(card=files)
    browser.open_treserva()
    page = browser.click_log_in_at_treserva()
    page.get_by_role("link", name="SITHS eID på denna enhet").click()

    page.wait_for_url(f"{idp.cert_login_url}/cert-login?**")
    expect(page.get_by_role("alert")).to_contain_text(title)
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page.locator("#reason")).to_have_text(reason)
    expect(page.locator("html")).to_have_attribute("lang", "sv")
    expect(page.locator(".other-language")).to_have_attribute("lang", "en")
    assert_accessible(page, f"the error page for {reason}")
    if card == "forged":
        screenshot(page, "error", shots)
        # "Försök igen" leads back to the chooser of the same login.
        page.get_by_role("link", name="Försök igen").click()
        browser.expect_at_chooser()
    browser.expect_not_logged_in_at_treserva()


# --- language -------------------------------------------------------------------------------


def test_english_switch_changes_the_language_of_the_login(
    session_factory, app: SithsEidApp
) -> None:
    browser = session_factory()
    browser.open_treserva()
    page = browser.click_log_in_at_treserva()
    html = page.locator("html")
    expect(html).to_have_attribute("lang", "sv")
    switch = page.get_by_role("link", name="In English")
    expect(switch).to_have_attribute("lang", "en")
    switch.click()

    expect(html).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Identify yourself to the City of Gothenburg Access Service"
    )
    expect(page.get_by_role("link", name="På svenska")).to_have_attribute("lang", "sv")
    assert_accessible(page, "the login chooser in English")

    # The choice is kept for the rest of the login (a cookie): the QR page is English too.
    page.get_by_role("link", name="SITHS eID on another device").click()
    page.wait_for_url("**/login/other-device?**")
    expect(html).to_have_attribute("lang", "en")
    status = page.locator("#status")
    expect(status).to_have_text("Start the SITHS eID app and scan the QR code.")
    expect(page.get_by_role("img", name=re.compile("QR code to scan"))).to_be_visible()
    assert_accessible(page, "the QR page in English")
    scan = app.scan(read_qr_on_screen(page))
    expect(status).to_have_text("Enter your security code in the app.", timeout=5_000)
    app.cancel(scan)
    expect(status).to_contain_text("The login was cancelled in the app.", timeout=5_000)
    expect(page.get_by_role("link", name="Start again")).to_be_visible()

    page.get_by_role("link", name="På svenska").click()
    expect(html).to_have_attribute("lang", "sv")
    expect(status).to_contain_text("Inloggningen avbröts i appen.")
    expect(page.get_by_role("link", name="Starta om")).to_be_visible()


# --- a phone ---------------------------------------------------------------------------------


def assert_no_sideways_scrolling(page: Page) -> None:
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"the page is wider than the screen: {widths} ({page.url})"


def test_pages_fit_a_phone_screen(session_factory, shots: Path) -> None:
    browser = session_factory(viewport=PHONE)
    page = browser.open_treserva()
    assert_no_sideways_scrolling(page)
    browser.click_log_in_at_treserva()
    assert_no_sideways_scrolling(page)
    for method in page.locator(".method").all():
        assert method.bounding_box()["height"] >= 44  # a comfortable touch target
    screenshot(page, "login-phone", shots)

    page.get_by_role("link", name="SITHS eID på annan enhet").click()
    page.wait_for_url("**/login/other-device?**")
    expect(page.locator("#qr svg")).to_be_visible()
    assert_no_sideways_scrolling(page)
    box = page.locator("#qr svg").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    assert read_qr_on_screen(page).startswith("sithseid.")

    # WCAG 1.4.10 (reflow): at 320 CSS pixels nothing scrolls sideways, and the QR code is
    # scaled down whole rather than cut off at its edge.
    page.set_viewport_size({"width": 320, "height": 640})
    assert_no_sideways_scrolling(page)
    box = page.locator("#qr svg").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 320, box
    assert read_qr_on_screen(page).startswith("sithseid.")


# --- the checks themselves -----------------------------------------------------------------


def test_axe_check_finds_what_it_should(chromium: Browser) -> None:
    """The accessibility check is not vacuous: on a page made to fail, axe-core says so."""
    context = new_context(chromium)
    try:
        page = context.new_page()
        page.set_content(
            "<html><head><title>x</title></head><body><main><h1>Rubrik</h1>"
            '<p style="color:#bbb;background:#fff">Ljusgrå text</p>'
            '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
            '<a href="/x"></a></main></body></html>'
        )
        found = {violation["id"] for violation in axe_violations(page)}
    finally:
        context.close()
    assert {"html-has-lang", "color-contrast", "image-alt", "link-name"} <= found, found


# --- the README -----------------------------------------------------------------------------


def test_readme_shows_the_screenshots() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for name in README_SCREENSHOTS:
        assert f"tests/screenshots/{name}.png" in readme, name
        assert (SCREENSHOTS / f"{name}.png").is_file(), name

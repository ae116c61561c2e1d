"""A real Chromium (Debian's ``chromium``, driven by Playwright) for the browser tests.

Trust, without switching checks off:

- Chromium itself accepts exactly one key besides its usual roots: the test TLS server's
  (``--ignore-certificate-errors-spki-list`` with that key's SHA-256; Chromium honours the flag
  only with its own profile directory, which Playwright always gives it).
- A context that presents a card's client certificate goes through Playwright's local proxy,
  which makes the TLS connections itself (Chromium has no API to be handed a client
  certificate), and Playwright has Chromium ignore certificate errors in that context, as it
  must for the proxy's own certificate. The proxy verifies every server it connects to against
  the CAs Node.js trusts, to which ``NODE_EXTRA_CA_CERTS`` adds the test TLS CA (without it,
  the proxy answers "unable to verify the first certificate"). So that no connection of such a
  context escapes that check, it lists every origin of the test (IdP, card listener, mock
  Treserva) with the card; a server that asks for no client certificate is sent none.
  ``ignore_https_errors`` stays off everywhere.

Everything stays on loopback: the IdP, its card listener, mock Treserva and the OCSP responder.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Iterable
from pathlib import Path

import pytest
import zxingcpp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, Playwright

HERE = Path(__file__).resolve().parent
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
)
AXE_JS = HERE / "node_modules" / "axe-core" / "axe.min.js"
# The rule tags of WCAG 2.1 levels A and AA.
WCAG_21_AA = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
SCREENSHOTS = HERE.parent / "screenshots"
# Committed screenshots are rewritten only when asked (the QR code differs on every run).
UPDATE_SCREENSHOTS = os.environ.get("UPDATE_SCREENSHOTS") == "1"
SCREENSHOT_MAX_BYTES = 120_000

DESKTOP = {"width": 1024, "height": 768}
PHONE = {"width": 390, "height": 844}


def spki_sha256(cert_file: Path) -> str:
    """Base64 SHA-256 of a certificate's SubjectPublicKeyInfo (Chromium's pin format)."""
    certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def launch_chromium(playwright: Playwright, tls_server_cert: Path) -> Browser:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[
            *CHROMIUM_ARGS,
            f"--ignore-certificate-errors-spki-list={spki_sha256(tls_server_cert)}",
        ],
    )


def new_context(
    browser: Browser,
    *,
    card: tuple[Path, Path] | None = None,
    origins: Iterable[str] = (),
    viewport: dict[str, int] | None = None,
) -> BrowserContext:
    """A fresh browser profile (its own cookies); with ``card``, presenting it to ``origins``."""
    options: dict = {
        "viewport": viewport or DESKTOP,
        "locale": "sv-SE",
        "timezone_id": "Europe/Stockholm",
        "device_scale_factor": 1,
    }
    if card is not None:
        cert, key = card
        options["client_certificates"] = [
            {"origin": origin, "certPath": str(cert), "keyPath": str(key)} for origin in origins
        ]
    context = browser.new_context(**options)
    context.set_default_timeout(15_000)
    return context


# --- axe-core -------------------------------------------------------------------------------

_AXE_RUN = """async (tags) => {
  const result = await axe.run(document, {
    runOnly: { type: "tag", values: tags },
    resultTypes: ["violations"],
  });
  return result.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    nodes: v.nodes.map((n) => n.target.join(" ") + " — " + n.failureSummary),
  }));
}"""


def axe_source() -> str:
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: run `npm ci` in {HERE} (`make test` does)")
    return AXE_JS.read_text(encoding="utf-8")


def axe_violations(page: Page) -> list[dict]:
    """What axe-core finds against WCAG 2.1 A and AA on the page as it is now."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # Evaluated through the DevTools protocol: the page's own Content-Security-Policy (no
        # inline or foreign scripts) stays in force; nothing is loaded from elsewhere.
        page.evaluate(axe_source())
    return page.evaluate(_AXE_RUN, list(WCAG_21_AA))


def assert_accessible(page: Page, what: str) -> None:
    violations = axe_violations(page)
    report = "\n".join(
        f"- {v['id']} ({v['impact']}): {v['help']}\n    " + "\n    ".join(v["nodes"])
        for v in violations
    )
    assert not violations, f"axe-core: WCAG 2.1 AA violations on {what} ({page.url}):\n{report}"


# --- the keyboard ---------------------------------------------------------------------------


def focused_matches(page: Page, selector: str) -> bool:
    return page.evaluate(
        "(s) => !!document.activeElement && document.activeElement.matches(s)", selector
    )


def assert_focus_visible(page: Page) -> None:
    """The focused element shows a focus indicator (an outline of some width)."""
    style = page.evaluate(
        """() => {
          const s = getComputedStyle(document.activeElement);
          return { style: s.outlineStyle, width: parseFloat(s.outlineWidth) };
        }"""
    )
    assert style["style"] != "none" and style["width"] >= 2, (page.url, style)


def tab_to(page: Page, selector: str, *, limit: int = 25) -> None:
    """Press Tab (only Tab) until ``selector`` has the focus, which must be visible."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if focused_matches(page, selector):
            assert_focus_visible(page)
            return
    raise AssertionError(f"Tab never reached {selector} on {page.url}")


# --- pixels ---------------------------------------------------------------------------------


def read_qr_png(png: bytes) -> str:
    """Decode the one QR code in a screenshot, as a phone's camera would."""
    picture = Image.open(io.BytesIO(png)).convert("L")
    found = zxingcpp.read_barcodes(picture, formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(found) == 1, f"expected one QR code in the screenshot, found {len(found)}"
    assert found[0].valid, found[0].error
    return found[0].text


def read_qr_on_screen(page: Page) -> str:
    """The QR code as drawn on the screen now: a screenshot of it, decoded."""
    return read_qr_png(page.locator("#qr").screenshot(animations="disabled"))


def screenshot(page: Page, name: str, out_dir: Path) -> Path:
    """A full-page screenshot, reduced to a small palette PNG; into ``tests/screenshots``
    when ``UPDATE_SCREENSHOTS=1``, else into ``out_dir``."""
    png = page.screenshot(full_page=True, animations="disabled", caret="hide")
    picture = Image.open(io.BytesIO(png)).convert("RGB")
    small = picture.quantize(colors=96, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    target = (SCREENSHOTS if UPDATE_SCREENSHOTS else out_dir) / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    small.save(target, optimize=True)
    assert target.stat().st_size < SCREENSHOT_MAX_BYTES, (target, target.stat().st_size)
    return target

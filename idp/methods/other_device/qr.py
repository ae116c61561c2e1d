"""The animated QR code: ``sithseid.<qrStartToken>.<seconds>.<qrAuthCode>``.

``qrAuthCode`` is HMAC-SHA256 over the decimal seconds since the order started, keyed with the
order's ``qrStartSecret``, which only the IdP knows. A code is accepted only while fresh, so a
QR code photographed and relayed to someone else's phone goes stale within seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

import zxingcpp

QR_PREFIX = "sithseid"
# A scanned code older than this is refused: the relay window.
QR_MAX_AGE_SECONDS = 5
_QR_PATTERN = re.compile(
    rf"{QR_PREFIX}\.(?P<token>[A-Za-z0-9_-]{{16,64}})\.(?P<seconds>[0-9]{{1,6}})\.(?P<code>[0-9a-f]{{64}})"
)


def qr_auth_code(qr_start_secret: str, seconds: int) -> str:
    return hmac.new(
        qr_start_secret.encode("ascii"), str(seconds).encode("ascii"), hashlib.sha256
    ).hexdigest()


def qr_content(qr_start_token: str, qr_start_secret: str, seconds: int) -> str:
    return f"{QR_PREFIX}.{qr_start_token}.{seconds}.{qr_auth_code(qr_start_secret, seconds)}"


@dataclass(frozen=True)
class ScannedQr:
    qr_start_token: str
    seconds: int
    auth_code: str


def parse_qr_content(text: str) -> ScannedQr | None:
    """The parts of a scanned QR code, or None if it is not one of ours."""
    match = _QR_PATTERN.fullmatch(text.strip())
    if match is None:
        return None
    return ScannedQr(match["token"], int(match["seconds"]), match["code"])


def qr_is_authentic(scanned: ScannedQr, qr_start_secret: str) -> bool:
    expected = qr_auth_code(qr_start_secret, scanned.seconds)
    return hmac.compare_digest(expected, scanned.auth_code)


# The quiet zone: modules of white around the code, 4 by the standard.
_QR_BORDER = 4
_DARK_RUN = re.compile(rb"\x00+")
# The tail of a dark run's path segment by run length ("h3v1h-3z"), made once: the path has
# several hundred runs and is drawn for every collect of every waiting order.
_RUN_SEGMENTS = tuple(f"h{length}v1h-{length}z" for length in range(178))  # 177: version 40


def qr_svg(content: str) -> str:
    """An SVG image of the QR code (error correction M), large enough to scan from a screen.

    Encoded by zxing-cpp: the browser fetches a new code every second for every waiting order,
    and zxing-cpp's C++ encoder (mask selection included) takes about a tenth of the time of
    segno's pure Python one. The SVG is one path of dark runs with a viewBox and no fixed size:
    the page's CSS decides how large it is drawn.
    """
    barcode = zxingcpp.create_barcode(content, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    modules = memoryview(barcode.to_image(scale=1, add_quiet_zones=False))  # 0x00 = dark
    height, width = modules.shape
    pixels = modules.tobytes()
    path = []
    for y in range(height):
        row_start = y * width
        # Each run is searched within its row of the one buffer (no slice per row).
        moved_to_row = f" {y + _QR_BORDER}"
        for run in _DARK_RUN.finditer(pixels, row_start, row_start + width):
            start, end = run.span()
            x = start - row_start + _QR_BORDER
            path.append(f"M{x}{moved_to_row}{_RUN_SEGMENTS[end - start]}")
    size = width + 2 * _QR_BORDER
    # No title or role: the page's <figure role="img"> carries the accessible name.
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="qr-code" viewBox="0 0 {size} {size}" '
        f'shape-rendering="crispEdges" aria-hidden="true" focusable="false">'
        f'<rect width="{size}" height="{size}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(path)}"/></svg>'
    )

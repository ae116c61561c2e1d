"""The animated QR code: ``sithseid.<qrStartToken>.<seconds>.<qrAuthCode>``.

``qrAuthCode`` is HMAC-SHA256 over the decimal seconds since the order started, keyed with the
order's ``qrStartSecret``, which only the IdP knows. A code is accepted only while fresh, so a
QR code photographed and relayed to someone else's phone goes stale within seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
from dataclasses import dataclass

import segno

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


def qr_svg(content: str) -> str:
    """An SVG image of the QR code, large enough to scan from a screen."""
    buffer = io.BytesIO()
    segno.make(content, error="m").save(
        buffer,
        kind="svg",
        scale=7,
        border=4,
        xmldecl=False,
        svgns=True,
        title="QR-kod för SITHS eID-appen",
        svgclass="qr-code",
        lineclass=None,
        # A viewBox, so CSS can scale the code down whole on a narrow screen.
        omitsize=True,
    )
    return buffer.getvalue().decode("utf-8")

"""Reading the QR code off the page as a phone's camera would: from the image, not the text.

The SVG the browser would draw is rasterised (cairosvg, on the white a screen shows behind it)
and the pixels are decoded by a real QR decoder (zxing-cpp). Nothing here looks at what the
code says in any other form, so a QR code that does not scan fails the test.
"""

from __future__ import annotations

import io
import re

import cairosvg
import zxingcpp
from PIL import Image

_QR_FIGURE = re.compile(r'<figure[^>]*\bid="qr"[^>]*>\s*(<svg\b.*?</svg>)', re.DOTALL)


def qr_svg_on_page(html: str) -> str:
    """The SVG image inside the page's ``<figure id="qr">``; AssertionError if there is none."""
    match = _QR_FIGURE.search(html)
    assert match, "the page shows no QR code"
    return match.group(1)


def read_qr_image(svg: str, *, scale: float = 1.0) -> str:
    """Rasterise ``svg`` and decode the one QR code in the picture; return its text."""
    png = cairosvg.svg2png(bytestring=svg.encode("utf-8"), background_color="white", scale=scale)
    picture = Image.open(io.BytesIO(png)).convert("L")
    found = zxingcpp.read_barcodes(picture, formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(found) == 1, f"expected one QR code in the picture, found {len(found)}"
    assert found[0].valid, found[0].error
    return found[0].text


def read_qr_on_page(html: str) -> str:
    """What a phone reads when pointed at the page's QR code."""
    return read_qr_image(qr_svg_on_page(html))

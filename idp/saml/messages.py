"""Decoding SAML protocol messages off the wire, safely.

Size is bounded before and after inflation (a DEFLATE bomb is refused, not expanded), and any
DTD is refused outright: SAML messages never need one, and entities are how XXE and "billion
laughs" attacks arrive.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from idp.errors import Refusal
from idp.saml.reasons import SamlReason

_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class MessageRejected(Refusal):
    """The message cannot be read; ``reason`` is a stable code and the text says why."""


def _b64decode(text: str, limit: int) -> bytes:
    if len(text) > limit:
        raise MessageRejected(SamlReason.REQUEST_TOO_LARGE, f"SAML message over {limit} bytes")
    try:
        return base64.b64decode(text.encode("ascii"), validate=False)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MessageRejected(SamlReason.MALFORMED_REQUEST, "SAML message is not base64") from exc


def _check_xml(xml: bytes) -> str:
    if _DTD.search(xml):
        raise MessageRejected(SamlReason.XML_DTD_REFUSED, "SAML message contains a DTD or entity")
    try:
        return xml.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageRejected(SamlReason.MALFORMED_REQUEST, "SAML message is not UTF-8") from exc


def decode_redirect_message(text: str, limit: int) -> str:
    """Base64-decode and inflate an HTTP-Redirect binding message (at most ``limit`` bytes)."""
    compressed = _b64decode(text, limit)
    inflater = zlib.decompressobj(-15)
    try:
        xml = inflater.decompress(compressed, limit)
    except zlib.error as exc:
        raise MessageRejected(
            SamlReason.MALFORMED_REQUEST, "SAML message is not DEFLATE data"
        ) from exc
    if inflater.unconsumed_tail:
        raise MessageRejected(
            SamlReason.REQUEST_TOO_LARGE, f"SAML message inflates to over {limit} bytes"
        )
    return _check_xml(xml)


def decode_post_message(text: str, limit: int) -> str:
    """Base64-decode an HTTP-POST binding message (at most ``limit`` bytes)."""
    return _check_xml(_b64decode(text, limit))


SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"


def require_root(xml: str, local_name: str) -> None:
    """Refuse anything but well-formed XML whose root is ``samlp:<local_name>``.

    pysaml2 reports a document of the wrong type as a signature failure; checking first gives
    integrators the true reason.
    """
    try:
        root = ElementTree.fromstring(xml.encode("utf-8"), forbid_dtd=True)
    except (ElementTree.ParseError, DefusedXmlException, ValueError) as exc:
        raise MessageRejected(
            SamlReason.MALFORMED_REQUEST, "SAML message is not well-formed XML"
        ) from exc
    if root.tag != f"{{{SAMLP}}}{local_name}":
        raise MessageRejected(
            SamlReason.MALFORMED_REQUEST, f"expected samlp:{local_name}, got {root.tag}"
        )

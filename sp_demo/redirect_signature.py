"""Checking an HTTP-Redirect binding signature over the query octets exactly as received.

SAML bindings 3.4.4.1: the signature covers ``SAMLRequest=…&RelayState=…&SigAlg=…`` (or
``SAMLResponse=…``) as they were URL-encoded by the sender. Re-encoding decoded values (what
pysaml2 does) can differ from the sender's octets and refuse a good message or, worse, accept
one that was never signed that way. Only RSA-SHA256/512 are accepted; SHA-1 is not.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

_ALGORITHMS: dict[str, hashes.HashAlgorithm] = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": hashes.SHA256(),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": hashes.SHA512(),
}


class RedirectSignatureError(Exception):
    """The query's signature is missing, malformed or made by none of the keys."""


def verify_redirect_query(
    raw_query: str, message_param: str, certificates: list[x509.Certificate]
) -> None:
    """Require a valid signature by one of ``certificates`` over ``raw_query``'s
    ``message_param`` (``SAMLRequest`` or ``SAMLResponse``), ``RelayState`` and ``SigAlg``."""
    raw: dict[str, str] = {}
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        if name in raw:
            raise RedirectSignatureError(f"{name} appears twice")
        raw[name] = value
    if message_param not in raw or "Signature" not in raw or "SigAlg" not in raw:
        raise RedirectSignatureError("the message is not signed")
    digest = _ALGORITHMS.get(urllib.parse.unquote_plus(raw["SigAlg"]))
    if digest is None:
        raise RedirectSignatureError("signature algorithm refused")
    signed_parts = [f"{message_param}={raw[message_param]}"]
    if "RelayState" in raw:
        signed_parts.append(f"RelayState={raw['RelayState']}")
    signed_parts.append(f"SigAlg={raw['SigAlg']}")
    try:
        signed = "&".join(signed_parts).encode("ascii")
        signature = base64.b64decode(urllib.parse.unquote_plus(raw["Signature"]), validate=True)
    except (UnicodeEncodeError, binascii.Error) as error:
        raise RedirectSignatureError("malformed signature or query") from error
    for certificate in certificates:
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            continue
        try:
            key.verify(signature, signed, padding.PKCS1v15(), digest)
            return
        except InvalidSignature:
            continue
    raise RedirectSignatureError("no key of the sender verifies the signature")

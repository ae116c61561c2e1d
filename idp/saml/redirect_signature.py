"""HTTP-Redirect binding signatures, verified over the query octets exactly as received.

SAML bindings 3.4.4.1: the signature covers ``SAMLRequest=…`` (or ``SAMLResponse=…``),
``RelayState=…`` if present and ``SigAlg=…``, URL-encoded as the sender sent them. Re-encoding
decoded values can differ from those octets. The algorithm name never picks the key type: an
RSA algorithm is checked with RSA keys only, ECDSA with EC keys only (CVE-2021-21239's class of
confusion). SHA-1 is not accepted.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

_ALGORITHMS: dict[str, tuple[type, hashes.HashAlgorithm]] = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": (rsa.RSAPublicKey, hashes.SHA256()),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": (rsa.RSAPublicKey, hashes.SHA512()),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": (
        ec.EllipticCurvePublicKey,
        hashes.SHA256(),
    ),
}


class RedirectSignatureInvalid(Exception):
    """The query is malformed, or signed by none of the given keys."""


class RedirectUnsigned(RedirectSignatureInvalid):
    """The query carries no signature at all."""


def verify_redirect_signature(
    raw_query: str, message_param: str, certificates: Iterable[x509.Certificate]
) -> None:
    """Require a valid signature by one of ``certificates`` over ``raw_query``'s
    ``message_param`` (``SAMLRequest`` or ``SAMLResponse``); raise :class:`RedirectUnsigned`
    if there is none, :class:`RedirectSignatureInvalid` if it is bad."""
    raw: dict[str, str] = {}
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        if name in raw:
            raise RedirectSignatureInvalid(f"{name} appears twice")
        raw[name] = value
    if message_param not in raw or "Signature" not in raw or "SigAlg" not in raw:
        raise RedirectUnsigned("the message is not signed")
    algorithm = urllib.parse.unquote_plus(raw["SigAlg"])
    if algorithm not in _ALGORITHMS:
        raise RedirectSignatureInvalid(f"signature algorithm {algorithm[:100]} refused")
    key_type, digest = _ALGORITHMS[algorithm]
    signed_parts = [f"{message_param}={raw[message_param]}"]
    if "RelayState" in raw:
        signed_parts.append(f"RelayState={raw['RelayState']}")
    signed_parts.append(f"SigAlg={raw['SigAlg']}")
    try:
        signed = "&".join(signed_parts).encode("ascii")
        signature = base64.b64decode(urllib.parse.unquote_plus(raw["Signature"]), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise RedirectSignatureInvalid("the Signature or query is malformed") from exc
    for certificate in certificates:
        key = certificate.public_key()
        if not isinstance(key, key_type):
            continue
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, signed, padding.PKCS1v15(), digest)
            else:
                assert isinstance(key, ec.EllipticCurvePublicKey)
                key.verify(signature, signed, ec.ECDSA(digest))
            return
        except InvalidSignature:
            continue
    raise RedirectSignatureInvalid("no key in the sender's metadata verifies the signature")

"""Mock Treserva's own reader of the SAML messages the IdP sends (HTTP-Redirect and HTTP-POST).

Mock Treserva is the SP that checks the IdP, so it shares none of the IdP's code: this reader
and its Redirect-signature check are written here against the spec (SAML bindings 3.4 and
3.5). The message itself (XML, enveloped signatures, issuer, times) is then pysaml2's to judge,
through :class:`saml2.client.Saml2Client`.

The Redirect-signature check is not pysaml2's ``verify_redirect_signature``: that one rebuilds
the signed octets by re-encoding the decoded values, where bindings 3.4.4.1 says to check the
octets as received, and it takes RSA-SHA1. Here the signature covers ``SAMLRequest=…`` (or
``SAMLResponse=…``), ``RelayState=…`` if present and ``SigAlg=…``, exactly as they stood in
the query, and the value acted on is decoded from those same octets. A name seen twice after
percent-decoding is refused, and so is a binding parameter whose name is percent-encoded (no
signer writes one), so a second, unsigned ``SAML%52equest`` cannot stand in for the signed one.
The algorithm never picks the key type: RSA algorithms take RSA keys, ECDSA takes EC keys.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

SAML_REQUEST = "SAMLRequest"
SAML_RESPONSE = "SAMLResponse"
RELAY_STATE = "RelayState"
SIG_ALG = "SigAlg"
SIGNATURE = "Signature"
_BINDING_PARAMETERS = frozenset({SAML_REQUEST, SAML_RESPONSE, RELAY_STATE, SIG_ALG, SIGNATURE})

# More than this many query or form parameters is not a SAML message.
MAX_PARAMETERS = 16
# Bindings 3.4.3 and 3.5.3 say 80 bytes; the IdP only echoes what this SP sent, so a RelayState
# far beyond that is not one of ours. Generous, but bounded.
MAX_RELAY_STATE = 80 * 1024

_ALGORITHMS: dict[str, tuple[type, hashes.HashAlgorithm]] = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": (rsa.RSAPublicKey, hashes.SHA256()),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": (rsa.RSAPublicKey, hashes.SHA512()),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": (
        ec.EllipticCurvePublicKey,
        hashes.SHA256(),
    ),
}


class Form(Protocol):
    """A parsed form (Starlette's ``FormData`` is one): (name, value) pairs in the order
    received, a value being text or an uploaded file."""

    def multi_items(self) -> list[tuple[str, Any]]: ...


class BindingError(Exception):
    """The query or form is not one acceptable SAML message. ``reason``: ``malformed``,
    ``duplicate`` (a parameter twice, or a binding parameter's name percent-encoded) or
    ``signature`` (the Redirect signature is missing, malformed or wrong). ``detail`` is for
    logs."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class QuerySignature:
    """An HTTP-Redirect signature: its algorithm, its (base64) value, and the octets it must
    cover, as received."""

    algorithm: str
    value: str
    signed_octets: bytes


@dataclass(frozen=True)
class ReceivedMessage:
    """One SAML message as received: the parameter that carried it (``SAMLRequest`` or
    ``SAMLResponse``), its still-encoded text (base64, DEFLATEd for HTTP-Redirect), the
    RelayState, and for HTTP-Redirect the query signature (None when the query is unsigned)."""

    parameter: str
    text: str
    relay_state: str
    query_signature: QuerySignature | None = None

    @property
    def is_request(self) -> bool:
        return self.parameter == SAML_REQUEST


def read_redirect_query(raw_query: bytes, allowed: Iterable[str]) -> ReceivedMessage:
    """Read one HTTP-Redirect message from the raw query string.

    Exactly one of the ``allowed`` message parameters must be present. Raises
    :class:`BindingError` for non-ASCII octets, too many parameters, a name seen twice after
    percent-decoding, a binding parameter whose name is percent-encoded, SigAlg without
    Signature (or the reverse), a RelayState over the limit, or no message. The signature is
    not checked here: see :func:`verify_query_signature`.
    """
    allowed = tuple(allowed)
    try:
        query = raw_query.decode("ascii")
    except UnicodeDecodeError as error:
        raise BindingError("malformed", "the query is not ASCII") from error
    parts = [part for part in query.split("&") if part]
    if len(parts) > MAX_PARAMETERS:
        raise BindingError("malformed", "too many query parameters")
    raw: dict[str, str] = {}
    values: dict[str, str] = {}
    for part in parts:
        raw_name, _, raw_value = part.partition("=")
        name = urllib.parse.unquote_plus(raw_name)
        if name in values:
            raise BindingError("duplicate", f"{name[:40]} appears twice")
        if name in _BINDING_PARAMETERS and raw_name != name:
            raise BindingError("duplicate", f"the parameter name {name} is percent-encoded")
        raw[name] = raw_value
        values[name] = urllib.parse.unquote_plus(raw_value)
    parameter = _one_message(values, allowed)
    if (SIG_ALG in values) != (SIGNATURE in values):
        raise BindingError("signature", "SigAlg and Signature come together")
    signature = None
    if SIGNATURE in values:
        # Bindings 3.4.4.1: these parameters, in this order, as the sender encoded them.
        signed = [f"{parameter}={raw[parameter]}"]
        if RELAY_STATE in raw:
            signed.append(f"{RELAY_STATE}={raw[RELAY_STATE]}")
        signed.append(f"{SIG_ALG}={raw[SIG_ALG]}")
        signature = QuerySignature(
            values[SIG_ALG], values[SIGNATURE], "&".join(signed).encode("ascii")
        )
    return ReceivedMessage(parameter, values[parameter], _relay_state(values), signature)


def read_post_form(form: Form, allowed: Iterable[str]) -> ReceivedMessage:
    """Read one HTTP-POST message from a parsed form. Raises :class:`BindingError` for too
    many fields, a name seen twice, a file upload, a RelayState over the limit, or not exactly
    one of the ``allowed`` message parameters. The signature is inside the XML (pysaml2's to
    check), so ``query_signature`` is None."""
    allowed = tuple(allowed)
    items = form.multi_items()
    if len(items) > MAX_PARAMETERS:
        raise BindingError("malformed", "too many form fields")
    values: dict[str, str] = {}
    for name, value in items:
        if name in values:
            raise BindingError("duplicate", f"{name[:40]} appears twice")
        if not isinstance(value, str):
            raise BindingError("malformed", f"{name[:40]} is a file")
        values[name] = value
    parameter = _one_message(values, allowed)
    return ReceivedMessage(parameter, values[parameter], _relay_state(values))


def verify_query_signature(
    signature: QuerySignature, certificates: Iterable[x509.Certificate]
) -> None:
    """Return if one of ``certificates`` made ``signature`` over its signed octets; raise
    :class:`BindingError` (``signature``) otherwise, also for an algorithm not accepted."""
    if signature.algorithm not in _ALGORITHMS:
        raise BindingError("signature", f"signature algorithm {signature.algorithm[:100]} refused")
    key_type, digest = _ALGORITHMS[signature.algorithm]
    try:
        value = base64.b64decode(signature.value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as error:
        raise BindingError("signature", "the Signature is not base64") from error
    for certificate in certificates:
        key = certificate.public_key()
        if not isinstance(key, key_type):
            continue
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(value, signature.signed_octets, padding.PKCS1v15(), digest)
            elif isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(value, signature.signed_octets, ec.ECDSA(digest))
            else:
                continue
            return
        except InvalidSignature:
            continue
    raise BindingError("signature", "no key in the IdP's metadata verifies the signature")


def _one_message(values: dict[str, str], allowed: tuple[str, ...]) -> str:
    present = [name for name in allowed if values.get(name)]
    if len(present) != 1:
        got = len(present) or "none"
        raise BindingError("malformed", f"expected one of {' or '.join(allowed)}, got {got}")
    return present[0]


def _relay_state(values: dict[str, str]) -> str:
    relay_state = values.get(RELAY_STATE, "")
    if len(relay_state) > MAX_RELAY_STATE:
        raise BindingError("malformed", "RelayState is too long")
    return relay_state

"""Reading a SAML message off the wire, once: the values used are the octets verified.

Every reader of a binding message at the IdP (its SSO and SLO endpoints) goes through
:func:`read_redirect_query` or :func:`read_post_form`; nothing else in the IdP looks at the query
string or form of a SAML endpoint. (Mock Treserva, which checks the IdP, has its own reader.)

HTTP-Redirect (SAML bindings 3.4.4.1): the signature covers ``SAMLRequest=…`` (or
``SAMLResponse=…``), ``RelayState=…`` if present and ``SigAlg=…``, URL-encoded as the sender
sent them. :func:`read_redirect_query` splits the raw query once and keeps, for each of those
parameters, the octets as received (what the signature is checked over) and their
percent-decoded value (what the IdP acts on), taken from the same part. So the message that was
verified is the message that is used: a later ``SAML%52equest=…`` cannot replace it, because a
name that appears twice after percent-decoding is refused, and so is a binding parameter whose
name was sent percent-encoded (no signer writes one; an attacker would).

The algorithm name never picks the key type: an RSA algorithm is checked with RSA keys only,
ECDSA with EC keys only (CVE-2021-21239's class of confusion). SHA-1 is not accepted.
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

from idp.errors import Refusal
from idp.saml.reasons import SamlReason

SAML_REQUEST = "SAMLRequest"
SAML_RESPONSE = "SAMLResponse"
RELAY_STATE = "RelayState"
SIG_ALG = "SigAlg"
SIGNATURE = "Signature"
_BINDING_PARAMETERS = frozenset({SAML_REQUEST, SAML_RESPONSE, RELAY_STATE, SIG_ALG, SIGNATURE})

# SAML bindings 3.4.3 and 3.5.3: RelayState is at most 80 bytes; SPs in the wild send more
# (SimpleSAMLphp sends a URL), so allow generous room but not an unbounded field.
MAX_RELAY_STATE = 80 * 1024
# More than this many query or form parameters is not a SAML message.
MAX_PARAMETERS = 16

_ALGORITHMS: dict[str, tuple[type, hashes.HashAlgorithm]] = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": (rsa.RSAPublicKey, hashes.SHA256()),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": (rsa.RSAPublicKey, hashes.SHA512()),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": (
        ec.EllipticCurvePublicKey,
        hashes.SHA256(),
    ),
}


class Form(Protocol):
    """A parsed form, as the web framework gives it (Starlette's ``FormData`` is one): its
    (name, value) pairs in the order received, a value being text or an uploaded file."""

    def multi_items(self) -> list[tuple[str, Any]]: ...


class BindingMessageRejected(Refusal):
    """The query or form is not one SAML binding message; ``reason`` is a stable code."""


class RedirectSignatureInvalid(BindingMessageRejected):
    """The HTTP-Redirect signature is malformed, or made by none of the given keys."""

    def __init__(self, detail: str) -> None:
        super().__init__(SamlReason.BAD_SIGNATURE, detail)


@dataclass(frozen=True)
class QuerySignature:
    """An HTTP-Redirect signature and the exact octets it must cover."""

    algorithm: str
    value: str
    signed_octets: bytes


@dataclass(frozen=True)
class BindingMessage:
    """One SAML message as received: which parameter carried it, its (still encoded) text, the
    RelayState, and for HTTP-Redirect the query signature (None when the query is unsigned).

    ``text`` is base64 (DEFLATEd for HTTP-Redirect), to be decoded by :mod:`idp.saml.messages`.
    """

    parameter: str
    text: str
    relay_state: str
    query_signature: QuerySignature | None = None

    @property
    def is_request(self) -> bool:
        return self.parameter == SAML_REQUEST


def _choose_message(values: dict[str, str], allowed: Iterable[str]) -> str:
    present = [name for name in allowed if values.get(name)]
    if len(present) != 1:
        wanted = " or ".join(allowed)
        raise BindingMessageRejected(
            SamlReason.MALFORMED_REQUEST,
            f"expected exactly one of {wanted}, got {len(present) or 'none'}",
        )
    return present[0]


def _check_relay_state(relay_state: str) -> str:
    if len(relay_state) > MAX_RELAY_STATE:
        raise BindingMessageRejected(SamlReason.MALFORMED_REQUEST, "RelayState is too long")
    return relay_state


def read_redirect_query(
    raw_query: bytes | str, allowed: Iterable[str] = (SAML_REQUEST,)
) -> BindingMessage:
    """Read one HTTP-Redirect message from the query string exactly as received.

    ``allowed`` names the message parameters this endpoint takes (``SAMLRequest``,
    ``SAMLResponse`` or both); exactly one must be present. Raises
    :class:`BindingMessageRejected` for a name seen twice after percent-decoding, a binding
    parameter whose name is percent-encoded, non-ASCII octets, a Signature without SigAlg (or the
    reverse), or no message. Other parameters are ignored, but counted against the limit.
    """
    allowed = tuple(allowed)
    if isinstance(raw_query, bytes):
        try:
            raw_query = raw_query.decode("ascii")
        except UnicodeDecodeError as exc:
            raise BindingMessageRejected(
                SamlReason.MALFORMED_REQUEST, "the query is not ASCII"
            ) from exc
    elif not raw_query.isascii():
        raise BindingMessageRejected(SamlReason.MALFORMED_REQUEST, "the query is not ASCII")
    parts = [part for part in raw_query.split("&") if part]
    if len(parts) > MAX_PARAMETERS:
        raise BindingMessageRejected(SamlReason.MALFORMED_REQUEST, "too many query parameters")
    raw: dict[str, str] = {}
    values: dict[str, str] = {}
    for part in parts:
        raw_name, _, raw_value = part.partition("=")
        name = urllib.parse.unquote_plus(raw_name)
        if name in values:
            raise BindingMessageRejected(
                SamlReason.DUPLICATE_PARAMETER, f"{name[:40]} appears twice"
            )
        if name in _BINDING_PARAMETERS and raw_name != name:
            raise BindingMessageRejected(
                SamlReason.DUPLICATE_PARAMETER, f"the parameter name {name} is percent-encoded"
            )
        raw[name] = raw_value
        values[name] = urllib.parse.unquote_plus(raw_value)
    parameter = _choose_message(values, allowed)
    relay_state = _check_relay_state(values.get(RELAY_STATE, ""))
    has_alg, has_signature = SIG_ALG in values, SIGNATURE in values
    if has_alg != has_signature:
        raise BindingMessageRejected(SamlReason.BAD_SIGNATURE, "SigAlg and Signature come together")
    signature = None
    if has_signature:
        # Bindings 3.4.4.1: these parameters, in this order, as the sender encoded them.
        signed = [f"{parameter}={raw[parameter]}"]
        if RELAY_STATE in raw:
            signed.append(f"{RELAY_STATE}={raw[RELAY_STATE]}")
        signed.append(f"{SIG_ALG}={raw[SIG_ALG]}")
        signature = QuerySignature(
            algorithm=values[SIG_ALG],
            value=values[SIGNATURE],
            signed_octets="&".join(signed).encode("ascii"),
        )
    return BindingMessage(parameter, values[parameter], relay_state, signature)


def read_post_form(form: Form, allowed: Iterable[str] = (SAML_REQUEST,)) -> BindingMessage:
    """Read one HTTP-POST message from a parsed form (its names are already percent-decoded).

    Raises :class:`BindingMessageRejected` for a name that appears twice, a file upload, or no
    message. HTTP-POST messages carry their signature inside the XML, so there is no
    ``query_signature``.
    """
    allowed = tuple(allowed)
    names = [name for name, _value in form.multi_items()]
    if len(names) > MAX_PARAMETERS:
        raise BindingMessageRejected(SamlReason.MALFORMED_REQUEST, "too many form fields")
    values: dict[str, str] = {}
    for name, value in form.multi_items():
        if name in values:
            raise BindingMessageRejected(
                SamlReason.DUPLICATE_PARAMETER, f"{name[:40]} appears twice"
            )
        if not isinstance(value, str):
            raise BindingMessageRejected(SamlReason.MALFORMED_REQUEST, f"{name[:40]} is a file")
        values[name] = value
    parameter = _choose_message(values, allowed)
    return BindingMessage(
        parameter, values[parameter], _check_relay_state(values.get(RELAY_STATE, ""))
    )


def verify_query_signature(
    signature: QuerySignature, certificates: Iterable[x509.Certificate]
) -> None:
    """Require that one of ``certificates`` made ``signature`` over its signed octets; raise
    :class:`RedirectSignatureInvalid` otherwise."""
    if signature.algorithm not in _ALGORITHMS:
        raise RedirectSignatureInvalid(f"signature algorithm {signature.algorithm[:100]} refused")
    key_type, digest = _ALGORITHMS[signature.algorithm]
    try:
        value = base64.b64decode(signature.value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise RedirectSignatureInvalid("the Signature is not base64") from exc
    for certificate in certificates:
        key = certificate.public_key()
        if not isinstance(key, key_type):
            continue
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(value, signature.signed_octets, padding.PKCS1v15(), digest)
            else:
                assert isinstance(key, ec.EllipticCurvePublicKey)
                key.verify(value, signature.signed_octets, ec.ECDSA(digest))
            return
        except InvalidSignature:
            continue
    raise RedirectSignatureInvalid("no key in the sender's metadata verifies the signature")

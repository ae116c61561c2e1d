"""Mock Treserva's own reader of the IdP's SAML messages (sp_demo/bindings.py), without a server:
every refusal, and the Redirect signature checked over the query octets as received.

The endpoints that use it are exercised over real sockets in tests/test_sp_demo_slo.py and
through the app in tests/test_sp_demo.py.
"""

from __future__ import annotations

import base64
import io
import urllib.parse
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from starlette.datastructures import FormData, UploadFile

from sp_demo.bindings import (
    MAX_PARAMETERS,
    MAX_RELAY_STATE,
    SAML_REQUEST,
    SAML_RESPONSE,
    BindingError,
    read_post_form,
    read_redirect_query,
    verify_query_signature,
)
from tests.helpers.certificates import self_signed

RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
BOTH = (SAML_REQUEST, SAML_RESPONSE)
# Base64 with the characters percent-encoding treats differently ('+', '/', '=').
MESSAGE = "fZJNb+IwEIb/ih/+/w=="

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_CERT = self_signed(RSA_KEY, "idp")
EC_CERT = self_signed(EC_KEY, "idp-ec")
OTHER_CERT = self_signed(rsa.generate_private_key(public_exponent=65537, key_size=2048), "other")


def quoted(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def sign(key: Any, algorithm: str, octets: bytes) -> str:
    if algorithm == ECDSA_SHA256:
        value = key.sign(octets, ec.ECDSA(hashes.SHA256()))
    else:
        # SHA-1 only to show that a signature made with it is refused.
        digest = hashes.SHA1() if algorithm == RSA_SHA1 else hashes.SHA256()  # noqa: S303
        value = key.sign(octets, padding.PKCS1v15(), digest)
    return base64.b64encode(value).decode("ascii")


def signed_query(
    key: Any = RSA_KEY, algorithm: str = RSA_SHA256, relay_state: str | None = "to me"
) -> str:
    """A query as a sender signs it: the parts percent-encoded, then signed as they stand."""
    parts = [f"{SAML_REQUEST}={quoted(MESSAGE)}"]
    if relay_state is not None:
        parts.append(f"RelayState={quoted(relay_state)}")
    parts.append(f"SigAlg={quoted(algorithm)}")
    signature = sign(key, algorithm, "&".join(parts).encode("ascii"))
    return "&".join([*parts, f"Signature={quoted(signature)}"])


def tampered_signature(query: str) -> str:
    """The query with one character of the signature's base64 changed (still base64)."""
    head, _, signature = query.rpartition("Signature=")
    changed = "A" if signature[10] != "A" else "B"
    return f"{head}Signature={signature[:10]}{changed}{signature[11:]}"


def verify(query: str, *certificates: Any) -> None:
    received = read_redirect_query(query.encode("ascii"), BOTH)
    assert received.query_signature is not None
    verify_query_signature(received.query_signature, certificates or (RSA_CERT,))


def refusal(query: bytes | str) -> str:
    raw = query.encode("ascii") if isinstance(query, str) else query
    with pytest.raises(BindingError) as refused:
        read_redirect_query(raw, BOTH)
    return refused.value.reason


def test_a_signed_query_is_read_and_verified_over_its_own_octets() -> None:
    query = signed_query()
    received = read_redirect_query(query.encode("ascii"), BOTH)
    assert received.is_request and received.text == MESSAGE
    assert received.relay_state == "to me"
    verify(query)
    # The octets as received, not a re-encoding: '+' for the space in RelayState is another
    # valid encoding of the same value, but not what was signed.
    assert "RelayState=to%20me" in query
    with pytest.raises(BindingError) as refused:
        verify(query.replace("RelayState=to%20me", "RelayState=to+me"))
    assert refused.value.reason == "signature"


def test_a_signature_without_relay_state_and_by_an_ec_key_is_verified() -> None:
    verify(signed_query(relay_state=None))
    verify(signed_query(EC_KEY, ECDSA_SHA256), OTHER_CERT, EC_CERT)


@pytest.mark.parametrize(
    ("query", "certificates"),
    [
        pytest.param(signed_query(), (OTHER_CERT,), id="another key"),
        pytest.param(signed_query(RSA_KEY, RSA_SHA1), (RSA_CERT,), id="rsa-sha1"),
        # The algorithm never picks the key type: an EC key is not tried for an RSA algorithm.
        pytest.param(signed_query(EC_KEY, ECDSA_SHA256), (RSA_CERT,), id="ecdsa, rsa key only"),
        pytest.param(
            signed_query(EC_KEY, ECDSA_SHA256).replace(quoted(ECDSA_SHA256), quoted(RSA_SHA256)),
            (EC_CERT,),
            id="rsa algorithm named, ec key",
        ),
        pytest.param(tampered_signature(signed_query()), (RSA_CERT,), id="tampered signature"),
        pytest.param(
            signed_query().replace("RelayState=to%20me", "RelayState=elsewhere"),
            (RSA_CERT,),
            id="tampered relay state",
        ),
        pytest.param(
            signed_query().rsplit("Signature=", 1)[0] + "Signature=%21%21",
            (RSA_CERT,),
            id="signature not base64",
        ),
        pytest.param(signed_query(), (), id="no key"),
    ],
)
def test_a_bad_query_signature_is_refused(query: str, certificates: tuple[Any, ...]) -> None:
    received = read_redirect_query(query.encode("ascii"), BOTH)
    assert received.query_signature is not None
    with pytest.raises(BindingError) as refused:
        verify_query_signature(received.query_signature, certificates)
    assert refused.value.reason == "signature"


def test_an_unsigned_query_has_no_signature_to_verify() -> None:
    received = read_redirect_query(f"{SAML_RESPONSE}={quoted(MESSAGE)}".encode(), BOTH)
    assert not received.is_request and received.query_signature is None


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        pytest.param(
            signed_query() + f"&SAMLRequest={quoted(MESSAGE)}", "duplicate", id="message twice"
        ),
        pytest.param(
            signed_query() + f"&SAML%52equest={quoted(MESSAGE)}",
            "duplicate",
            id="message twice, second name percent-encoded",
        ),
        pytest.param(
            f"SAML%52equest={quoted(MESSAGE)}", "duplicate", id="binding name percent-encoded"
        ),
        pytest.param(signed_query() + "&RelayState=other", "duplicate", id="relay state twice"),
        pytest.param(signed_query() + "&SigAlg=x", "duplicate", id="sigalg twice"),
        pytest.param(
            signed_query().split("&Signature=")[0], "signature", id="sigalg without signature"
        ),
        pytest.param(
            f"SAMLRequest={quoted(MESSAGE)}&Signature=AAAA",
            "signature",
            id="signature without sigalg",
        ),
        pytest.param("RelayState=x", "malformed", id="no message"),
        pytest.param("SAMLRequest=", "malformed", id="empty message"),
        pytest.param(
            f"SAMLRequest={quoted(MESSAGE)}&SAMLResponse={quoted(MESSAGE)}",
            "malformed",
            id="request and response",
        ),
        pytest.param(
            f"SAMLRequest=x&RelayState={'r' * (MAX_RELAY_STATE + 1)}",
            "malformed",
            id="relay state too long",
        ),
        pytest.param(
            "SAMLRequest=x" + "".join(f"&p{n}=1" for n in range(MAX_PARAMETERS)),
            "malformed",
            id="too many parameters",
        ),
        pytest.param(
            "SAMLRequest=x&RelayState=\xe5".encode("latin-1"), "malformed", id="not ascii"
        ),
    ],
)
def test_a_bad_redirect_query_is_refused(query: bytes | str, reason: str) -> None:
    assert refusal(query) == reason


def test_only_the_allowed_message_is_read() -> None:
    with pytest.raises(BindingError) as refused:
        read_redirect_query(f"SAMLRequest={quoted(MESSAGE)}".encode(), (SAML_RESPONSE,))
    assert refused.value.reason == "malformed"


def test_a_post_form_is_read() -> None:
    received = read_post_form(
        FormData([(SAML_RESPONSE, MESSAGE), ("RelayState", "r")]), (SAML_RESPONSE,)
    )
    assert received.text == MESSAGE and received.relay_state == "r"
    assert received.query_signature is None


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        pytest.param(
            [(SAML_RESPONSE, MESSAGE), (SAML_RESPONSE, "PHg+")], "duplicate", id="message twice"
        ),
        pytest.param(
            [(SAML_RESPONSE, MESSAGE), ("RelayState", "a"), ("RelayState", "b")],
            "duplicate",
            id="relay state twice",
        ),
        pytest.param([("RelayState", "a")], "malformed", id="no message"),
        pytest.param([(SAML_REQUEST, MESSAGE)], "malformed", id="not an allowed message"),
        pytest.param(
            [(SAML_RESPONSE, MESSAGE), ("RelayState", "r" * (MAX_RELAY_STATE + 1))],
            "malformed",
            id="relay state too long",
        ),
        pytest.param(
            [(SAML_RESPONSE, MESSAGE)] + [(f"p{n}", "1") for n in range(MAX_PARAMETERS)],
            "malformed",
            id="too many fields",
        ),
    ],
)
def test_a_bad_post_form_is_refused(items: list[tuple[str, Any]], reason: str) -> None:
    with pytest.raises(BindingError) as refused:
        read_post_form(FormData(items), (SAML_RESPONSE,))
    assert refused.value.reason == reason


def test_a_file_in_a_post_form_is_refused() -> None:
    upload = UploadFile(io.BytesIO(b"<x/>"), filename="response.xml")
    with pytest.raises(BindingError) as refused:
        read_post_form(FormData([(SAML_RESPONSE, upload)]), (SAML_RESPONSE,))
    assert refused.value.reason == "malformed"

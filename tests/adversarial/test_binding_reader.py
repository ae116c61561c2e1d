"""Property tests of the one SAML binding reader (idp/saml/bindings.py), without a server.

The read-once rule as properties:

- whatever query string comes in, the reader returns a message or raises
  ``BindingMessageRejected`` — nothing else;
- what it returns is what the signature covers: the message and RelayState it hands on are the
  percent-decoding of exactly the octets in ``signed_octets``, and the query holds exactly one
  part with each of those names (after percent-decoding);
- a name that appears twice after percent-decoding is refused, whatever the order;
- an honest query (each parameter once, names as written, any order, values encoded with
  ``+`` or ``%20``, plus unrelated parameters) is read back exactly, and its signed octets are
  the three parameters in the binding's order as the sender encoded them.
"""

from __future__ import annotations

import io
import re
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import FormData, UploadFile

from idp.saml.bindings import (
    MAX_PARAMETERS,
    BindingMessageRejected,
    read_post_form,
    read_redirect_query,
)
from tests.adversarial.figures import FIGURES, examples

BINDING_NAMES = ("SAMLRequest", "SAMLResponse", "RelayState", "SigAlg", "Signature")
texts = st.text(max_size=40)
base64ish = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
    min_size=1,
    max_size=60,
)


def encode(text: str, style: str) -> str:
    if style == "plus":
        return urllib.parse.quote_plus(text, safe="")
    if style == "lower":  # the escapes' hex digits in lower case
        return re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), urllib.parse.quote(text, safe=""))
    return urllib.parse.quote(text, safe="")


@st.composite
def name_spellings(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from([*BINDING_NAMES, "utm", "x", ""]) | st.text(max_size=6))
    if name and draw(st.booleans()):
        position = draw(st.integers(0, len(name) - 1))
        hex_case = draw(st.sampled_from(["{:02X}", "{:02x}"]))
        spelled = urllib.parse.quote(name[:position], safe="")
        spelled += "%" + hex_case.format(ord(name[position])) if name[position].isascii() else ""
        return spelled + urllib.parse.quote(name[position + 1 :], safe="")
    return urllib.parse.quote(name, safe="")


@st.composite
def raw_queries(draw: st.DrawFn) -> str:
    parts = draw(
        st.lists(
            st.tuples(name_spellings(), texts, st.sampled_from(["plus", "pct", "lower"])),
            max_size=8,
        )
    )
    pieces = [f"{name}={encode(value, style)}" for name, value, style in parts]
    if draw(st.booleans()):
        pieces.insert(0, draw(st.sampled_from(["", "=", "noequals", "%ZZ=1", "a=%", "=%C3"])))
    return "&".join(pieces)


def read(raw_query: str | bytes, allowed: tuple[str, ...]):
    FIGURES.tried("binding reader")
    return read_redirect_query(raw_query, allowed)


@settings(max_examples=examples(300))
@given(
    raw_query=raw_queries(),
    allowed=st.sampled_from([("SAMLRequest",), ("SAMLRequest", "SAMLResponse")]),
)
def test_what_is_used_is_what_the_signature_covers(
    raw_query: str, allowed: tuple[str, ...]
) -> None:
    try:
        message = read(raw_query, allowed)
    except BindingMessageRejected:
        return
    parts = [part.partition("=") for part in raw_query.split("&") if part]
    decoded_names = [urllib.parse.unquote_plus(name) for name, _, _ in parts]
    assert len(decoded_names) == len(set(decoded_names)), f"a duplicate was read: {raw_query}"
    assert decoded_names.count(message.parameter) == 1
    if message.query_signature is None:
        return
    signed = dict(
        pair.partition("=")[::2]
        for pair in message.query_signature.signed_octets.decode("ascii").split("&")
    )
    order = list(signed)
    assert (order[0], order[-1]) == (message.parameter, "SigAlg"), signed
    assert urllib.parse.unquote_plus(signed[message.parameter]) == message.text
    assert urllib.parse.unquote_plus(signed.get("RelayState", "")) == message.relay_state
    assert urllib.parse.unquote_plus(signed["SigAlg"]) == message.query_signature.algorithm


@settings(max_examples=examples(150))
@given(
    name=st.sampled_from(BINDING_NAMES),
    spelled=st.data(),
    first=texts,
    second=texts,
    before=st.booleans(),
)
def test_a_binding_parameter_twice_is_refused(
    name: str, spelled: st.DataObject, first: str, second: str, before: bool
) -> None:
    honest = [
        ("SAMLRequest", "fZBBT8MwDIX"),
        ("RelayState", "state"),
        ("SigAlg", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
        ("Signature", "c2lnbmF0dXJl"),
    ]
    parts = [f"{n}={encode(v, 'pct')}" for n, v in honest if n != name]
    spelling = spelled.draw(
        st.sampled_from(
            [
                name,
                name.replace(name[-1], f"%{ord(name[-1]):02X}"),
                f"%{ord(name[0]):02x}{name[1:]}",
            ]
        )
    )
    extra = [f"{name}={encode(first or 'x', 'plus')}", f"{spelling}={encode(second, 'pct')}"]
    query = "&".join([*extra, *parts] if before else [*parts, *extra])
    with pytest.raises(BindingMessageRejected):
        read(query, ("SAMLRequest", "SAMLResponse"))


@settings(max_examples=examples(150))
@given(
    message=base64ish,
    relay_state=st.none() | texts,
    signature=base64ish,
    extras=st.dictionaries(st.sampled_from(["utm", "lang", "x"]), texts, max_size=3),
    style=st.sampled_from(["plus", "pct", "lower"]),
    data=st.data(),
)
def test_an_honest_query_is_read_back_exactly(
    message: str,
    relay_state: str | None,
    signature: str,
    extras: dict[str, str],
    style: str,
    data: st.DataObject,
) -> None:
    algorithm = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    fields = [("SAMLRequest", message)]
    if relay_state is not None:
        fields.append(("RelayState", relay_state))
    fields.append(("SigAlg", algorithm))
    signed_octets = "&".join(f"{n}={encode(v, style)}" for n, v in fields).encode("ascii")
    fields.append(("Signature", signature))
    fields.extend(extras.items())
    order = data.draw(st.permutations(fields))
    read_back = read("&".join(f"{n}={encode(v, style)}" for n, v in order), ("SAMLRequest",))
    assert (read_back.parameter, read_back.text) == ("SAMLRequest", message)
    assert read_back.relay_state == (relay_state or "")
    assert read_back.query_signature is not None
    assert read_back.query_signature.value == signature
    assert read_back.query_signature.signed_octets == signed_octets


@settings(max_examples=examples(100))
@given(data=st.binary(max_size=200))
def test_bytes_that_are_not_ascii_are_refused_not_crashed_on(data: bytes) -> None:
    try:
        read(data, ("SAMLRequest",))
    except BindingMessageRejected:
        return


def test_too_many_parameters_are_refused() -> None:
    query = "SAMLRequest=x&" + "&".join(f"p{i}=v" for i in range(MAX_PARAMETERS))
    with pytest.raises(BindingMessageRejected):
        read(query, ("SAMLRequest",))


@settings(max_examples=examples(150))
@given(
    items=st.lists(
        st.tuples(st.sampled_from([*BINDING_NAMES, "x"]), texts | st.just(b"file")),
        max_size=6,
    )
)
def test_a_post_form_gives_one_message_or_a_refusal(items: list[tuple[str, object]]) -> None:
    form = FormData(
        [
            (name, UploadFile(file=io.BytesIO(value)) if isinstance(value, bytes) else value)
            for name, value in items
        ]
    )
    FIGURES.tried("binding reader")
    names = [name for name, _ in items]
    try:
        message = read_post_form(form, ("SAMLRequest", "SAMLResponse"))
    except BindingMessageRejected:
        return
    assert len(names) == len(set(names)), f"a duplicate field was read: {items}"
    assert not any(isinstance(value, bytes) for _, value in items), "a file was read"
    assert dict(items)[message.parameter] == message.text

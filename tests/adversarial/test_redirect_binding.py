"""Property tests of the HTTP-Redirect binding at the IdP's endpoints, over real sockets.

Each example starts from a query an SP really signed, then tampers with it the ways a
query-string reader can be fooled: the same parameter again under a percent-encoded name
(``SAML%52equest``, ``Relay%53tate``, lower- or upper-case hex), before or after the signed one;
the parameters reordered; a name re-encoded; a value re-encoded (``+`` and ``%20``, hex case),
emptied or dropped; an unrelated parameter added. The forged duplicates carry an unsigned
request of the attacker's making.

What is observable without a card: the signed requests ask for ``IsPassive``, so an accepted
AuthnRequest gets a NoPassive Response whose ``InResponseTo`` and ``RelayState`` show exactly
which request and RelayState were used; an accepted LogoutRequest gets a LogoutResponse
redirect that shows the same. The properties:

- a query with any protocol parameter twice (after percent-decoding the names) is refused;
- whatever is accepted is the signed message with the signed RelayState, never the forgery;
- the untampered query, in any parameter order and with an unrelated extra, is accepted.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
import zlib
from dataclasses import dataclass

import httpx
import pytest
from defusedxml import ElementTree
from hypothesis import given, settings
from hypothesis import strategies as st
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.saml import NAMEID_FORMAT_TRANSIENT, NameID

from sp_demo.config import Settings as SpDemoSettings
from sp_demo.idp_metadata import load_idp_metadata
from sp_demo.saml import SIG_RSA_SHA256, build_client, idp_entity_id
from tests.adversarial.figures import FIGURES, examples
from tests.adversarial.http_fuzz import deflate_raw
from tests.conftest import IdpUnderTest
from tests.helpers.flows import started_login
from tests.helpers.support import parse_page, reason_code, tls_context
from tests.helpers.treserva import make_treserva

PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
PROTOCOL_NAMES = ("SAMLRequest", "RelayState", "SigAlg", "Signature")
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"

Pair = tuple[str, str]  # (name, value) exactly as they appear in the query string


@dataclass(frozen=True)
class Signed:
    """A query an SP signed, the ID of the message in it, and a forged unsigned message."""

    url: str
    message_id: str
    relay_state: str
    forged_message: str  # deflated + base64, not URL-encoded

    @property
    def pairs(self) -> list[Pair]:
        query = urllib.parse.urlsplit(self.url).query
        return [tuple(part.split("=", 1)) for part in query.split("&")]  # type: ignore[misc]

    @property
    def endpoint(self) -> str:
        return self.url.partition("?")[0]


def decoded(pairs: list[Pair]) -> list[Pair]:
    return [(urllib.parse.unquote(n), urllib.parse.unquote_plus(v)) for n, v in pairs]


def encode_name(draw: st.DrawFn, name: str) -> str:
    """``name`` with at least one character percent-encoded, in upper- or lower-case hex."""
    positions = draw(st.sets(st.integers(0, len(name) - 1), min_size=1))
    case = draw(st.sampled_from(["{:02X}", "{:02x}"]))
    return "".join(
        "%" + case.format(ord(ch)) if i in positions else ch for i, ch in enumerate(name)
    )


def reencode(draw: st.DrawFn, value: str) -> str:
    """The same decoded value spelled differently (or unchanged when there is no other way)."""
    text = urllib.parse.unquote_plus(value)
    return draw(
        st.sampled_from(
            [
                urllib.parse.quote(text, safe=""),
                urllib.parse.quote_plus(text, safe=""),
                re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), urllib.parse.quote(text, safe="")),
                urllib.parse.quote(text, safe="/+="),
            ]
        )
    )


@st.composite
def tamperings(draw: st.DrawFn, signed: Signed) -> list[Pair]:
    """The signed pairs with 0-2 duplicates smuggled in (most examples have one), then 0-2
    other changes."""
    pairs = list(signed.pairs)
    forged_values = {
        "SAMLRequest": urllib.parse.quote(signed.forged_message, safe=""),
        "RelayState": urllib.parse.quote("forged-relay-state", safe=""),
        "SigAlg": urllib.parse.quote(RSA_SHA1, safe=""),
        "Signature": "AAAA",
    }
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
        name = draw(st.sampled_from(["SAMLRequest", "SAMLRequest", "RelayState", *PROTOCOL_NAMES]))
        spelled = encode_name(draw, name) if draw(st.integers(0, 3)) else name
        value = forged_values[name] if draw(st.integers(0, 3)) else dict(pairs).get(name, "")
        position = len(pairs) if draw(st.integers(0, 2)) else 0
        pairs.insert(position, (spelled, value))
    operations = st.sampled_from(["reorder", "rename", "reencode", "empty", "drop", "extra"])
    for operation in draw(st.lists(operations, max_size=2)):
        index = draw(st.integers(0, len(pairs) - 1)) if pairs else 0
        if operation == "reorder":
            pairs = draw(st.permutations(pairs))
        elif operation == "rename" and pairs:
            pairs[index] = (encode_name(draw, pairs[index][0]), pairs[index][1])
        elif operation == "reencode" and pairs:
            pairs[index] = (pairs[index][0], reencode(draw, pairs[index][1]))
        elif operation == "empty" and pairs:
            pairs[index] = (pairs[index][0], "")
        elif operation == "drop" and pairs:
            pairs.pop(index)
        elif operation == "extra":
            pairs.insert(index, ("utm_source", "x%20y"))
    return pairs


def has_duplicate(pairs: list[Pair]) -> bool:
    names = [name for name, _ in decoded(pairs)]
    return any(names.count(name) > 1 for name in (*PROTOCOL_NAMES, "SAMLResponse"))


def untampered(signed: Signed, pairs: list[Pair]) -> bool:
    """The signed pairs, byte for byte, in any order, plus at most unrelated ones, each once
    (any parameter twice may be refused: the reader cannot know which one the sender meant)."""
    protocol = [pair for pair in pairs if pair[0] in PROTOCOL_NAMES]
    names = [name for name, _ in decoded(pairs)]
    return (
        sorted(protocol) == sorted(signed.pairs)
        and len(set(names)) == len(names)
        and all(
            name in PROTOCOL_NAMES or urllib.parse.unquote(name) not in PROTOCOL_NAMES
            for name, _ in pairs
        )
    )


@dataclass(frozen=True)
class Outcome:
    """Which message and RelayState the IdP acted on, or None when it refused."""

    in_response_to: str | None
    relay_state: str | None


def _xml_of_redirect(value: str) -> bytes:
    return zlib.decompress(base64.b64decode(value), -15)


def send(client: httpx.Client, signed: Signed, pairs: list[Pair], area: str) -> httpx.Response:
    FIGURES.tried(area)
    query = "&".join(f"{name}={value}" for name, value in pairs)
    answer = client.get(httpx.URL(signed.endpoint, query=query.encode("ascii")))
    if answer.status_code >= 500:
        FIGURES.server_error(area, f"{answer.status_code} for {query[:300]}")
    assert answer.status_code < 500, f"{answer.status_code} for {query}"
    return answer


def sso_outcome(answer: httpx.Response) -> Outcome:
    if started_login(answer):
        return Outcome("(a pending login: a request without IsPassive was used)", None)
    forms = parse_page(answer.text).forms if answer.status_code == 200 else []
    fields = forms[0]["fields"] if forms else {}
    if "SAMLResponse" not in fields:
        return Outcome(None, None)
    root = ElementTree.fromstring(base64.b64decode(fields["SAMLResponse"]))
    return Outcome(root.get("InResponseTo"), fields.get("RelayState"))


def slo_outcome(answer: httpx.Response) -> Outcome:
    location = answer.headers.get("location", "") if answer.status_code in (302, 303) else ""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    if "SAMLResponse" not in query:
        return Outcome(None, None)
    root = ElementTree.fromstring(_xml_of_redirect(query["SAMLResponse"][0]))
    return Outcome(root.get("InResponseTo"), query.get("RelayState", [None])[0])


def check(signed: Signed, pairs: list[Pair], outcome: Outcome) -> None:
    query = "&".join(f"{name}={value}" for name, value in pairs)
    accepted = outcome.in_response_to is not None
    if has_duplicate(pairs):
        assert not accepted, f"a duplicated parameter was accepted ({outcome}): {query}"
    if accepted:
        assert outcome.in_response_to == signed.message_id, f"the forgery was used: {query}"
        assert outcome.relay_state == signed.relay_state, (
            f"RelayState {outcome.relay_state!r} used instead of {signed.relay_state!r}: {query}"
        )
    if untampered(signed, pairs):
        assert accepted, f"the signed query, only reordered, was refused: {query}"


relay_states = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("åäö"),
    min_size=1,
    max_size=30,
)


def _client(idp: IdpUnderTest) -> httpx.Client:
    return httpx.Client(verify=tls_context(idp.ca_file), follow_redirects=False, timeout=20)


@settings(max_examples=examples(25))
@given(data=st.data(), relay_state=relay_states)
def test_sso_redirect_acts_only_on_the_signed_request(
    idp: IdpUnderTest, data: st.DataObject, relay_state: str
) -> None:
    url, request_id = idp.sp.login_url(is_passive=True, relay_state=relay_state)
    _, forged = idp.sp.client.create_authn_request(
        url.partition("?")[0], binding=BINDING_HTTP_POST, sign=False, is_passive="true"
    )
    forged_message = base64.b64encode(deflate_raw(str(forged).encode())).decode()
    signed = Signed(url, request_id, relay_state, forged_message)
    pairs = data.draw(tamperings(signed))
    with _client(idp) as client:
        check(signed, pairs, sso_outcome(send(client, signed, pairs, "redirect binding sso")))


@pytest.fixture(scope="module")
def treserva_client(idp: IdpUnderTest, tmp_path_factory: pytest.TempPathFactory) -> Saml2Client:
    """Treserva's SAML client, registered at the IdP (metadata with SLO endpoints); no server
    needed: the IdP answers a LogoutRequest with a redirect, which is not followed."""
    treserva = make_treserva(idp, tmp_path_factory.mktemp("treserva-redirect"), "treserva-redirect")
    sp_settings = SpDemoSettings(
        base_url=treserva.base_url,
        var_dir=treserva.work,
        sp_key=idp.pki.sp_signing_key,
        sp_cert=idp.pki.sp_signing_cert,
        idp_metadata_url=f"{idp.base_url}/saml/metadata",
        tls_ca_file=idp.pki.tls_ca_cert,
        idp_metadata_cert=idp.pki.idp_signing_cert,
    )
    return build_client(sp_settings, load_idp_metadata(sp_settings))


@settings(max_examples=examples(20))
@given(data=st.data(), relay_state=relay_states)
def test_slo_redirect_acts_only_on_the_signed_request(
    idp: IdpUnderTest, treserva_client: Saml2Client, data: st.DataObject, relay_state: str
) -> None:
    sp = treserva_client
    destination = f"{idp.base_url}/saml/slo/redirect"

    def logout_request(sign: bool) -> tuple[str, str]:
        request_id, request = sp.create_logout_request(
            destination,
            idp_entity_id(sp),
            name_id=NameID(text="_not-a-known-subject", format=NAMEID_FORMAT_TRANSIENT),
            sign=False,
        )
        info = sp.apply_binding(
            BINDING_HTTP_REDIRECT,
            str(request),
            destination,
            relay_state,
            sign=sign,
            sigalg=SIG_RSA_SHA256 if sign else None,
        )
        return request_id, dict(info["headers"])["Location"]

    request_id, url = logout_request(sign=True)
    _, forged_url = logout_request(sign=False)
    forged_message = urllib.parse.parse_qs(urllib.parse.urlsplit(forged_url).query)["SAMLRequest"][
        0
    ]
    signed = Signed(url, request_id, relay_state, forged_message)
    pairs = data.draw(tamperings(signed))
    with _client(idp) as client:
        check(signed, pairs, slo_outcome(send(client, signed, pairs, "redirect binding slo")))


@pytest.mark.parametrize(
    "names", [("SAML%52equest", "Relay%53tate"), ("SAMLRequest", "RelayState")]
)
def test_the_appended_forgery_is_refused_at_sso(idp: IdpUnderTest, names: tuple[str, str]) -> None:
    """The attack of issue 14 itself: a signed query with a forged request and RelayState
    appended under encoded (or literal) names."""
    url, request_id = idp.sp.login_url(is_passive=True, relay_state="signed-state")
    _, forged = idp.sp.client.create_authn_request(
        url.partition("?")[0], binding=BINDING_HTTP_POST, sign=False, is_passive="true"
    )
    forged_message = base64.b64encode(deflate_raw(str(forged).encode())).decode()
    signed = Signed(url, request_id, "signed-state", forged_message)
    pairs = [
        *signed.pairs,
        (names[0], urllib.parse.quote(forged_message, safe="")),
        (names[1], "forged-state"),
    ]
    with _client(idp) as client:
        answer = send(client, signed, pairs, "redirect binding sso")
    assert sso_outcome(answer) == Outcome(None, None), answer.text[:500]
    assert answer.status_code == 400, reason_code(answer.text)

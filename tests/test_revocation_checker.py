"""Unit tests of :class:`idp.siths.revocation.RevocationChecker` and its database cache.

No sockets: the fetcher hands requests straight to the test PKI's :class:`OcspResponder` (the
same code the responder process runs), or returns responses built here for the cases the
responder never produces (signed by the CA itself, an expired responder, a delta CRL).
The integration tests over real sockets are in ``test_revocation.py``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from idp.db import Database, create_schema
from idp.siths.revocation import (
    RevocationChecker,
    RevocationOutcome,
    RevocationPolicy,
    RevocationProblem,
)
from idp.store.revocation_cache import DatabaseRevocationCache
from siths_testkit.pki import TestPki, issue_card
from siths_testkit.pki.cards import load_issuer
from siths_testkit.pki.issue import Issuer, generate_key
from siths_testkit.pki.ocsp_responder import Misbehaviour, OcspResponder
from siths_testkit.pki.revocation import ocsp_responder_certificate
from siths_testkit.pki.storage import load_certificate

OCSP = "http://ocsp.test/ocsp"
CRL = "http://ocsp.test/crl/hsa-id-ca.crl"
DOWN = "http://down.test/ocsp"
NEXT_UPDATE = dt.timedelta(minutes=10)


class Network:
    """A fetcher: ``http://ocsp.test`` is the PKI's responder; ``down.test`` is unreachable;
    ``custom`` answers every OCSP request when set. Counts what was asked."""

    def __init__(self, responder: OcspResponder) -> None:
        self.responder = responder
        self.asked: list[str] = []
        self.custom: bytes | None = None
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self, url: str, body: bytes | None) -> bytes:
        self.asked.append(url)
        if url.startswith("http://down.test"):
            raise RevocationProblem("unreachable", f"{url}: ConnectError")
        if body is not None:
            if self.custom is not None:
                return self.custom
            tail = url.removeprefix("http://ocsp.test/ocsp").strip("/")
            return self.responder.ocsp(body, Misbehaviour(tail) if tail else None, self.now)
        crl = self.responder.crl(url.rsplit("/", 1)[1], self.now)
        assert crl is not None
        return crl


@pytest.fixture(scope="module")
def responder(test_pki: TestPki) -> OcspResponder:
    return OcspResponder(test_pki, next_update=NEXT_UPDATE)


@pytest.fixture
def network(responder: OcspResponder) -> Network:
    return Network(responder)


@pytest.fixture(scope="module")
def ca(test_pki: TestPki) -> x509.Certificate:
    return load_certificate(test_pki.hsa_ca_cert)


@pytest.fixture(scope="module")
def card(test_pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> x509.Certificate:
    return _card(test_pki, tmp_path_factory.mktemp("cards"), ocsp=OCSP, crl=CRL)


def _card(pki: TestPki, out: Path, *, ocsp: str, crl: str) -> x509.Certificate:
    issued = issue_card(
        pki,
        hsa_id="SE2120001355-U0001",
        given_name="Unit",
        surname="Test",
        out_dir=out,
        ocsp_url=ocsp,
        crl_url=crl,
    )
    return load_certificate(issued.cert)


class MemoryCache:
    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, dt.datetime]] = {}

    def get(self, key: str, now: dt.datetime) -> str | None:
        status, until = self.entries.get(key, ("", now))
        return status if until > now else None

    def put(self, key: str, status: str, until: dt.datetime) -> None:
        self.entries[key] = (status, until)


def test_good_answer_is_cached_until_next_update(
    network: Network, card: x509.Certificate, ca: x509.Certificate
) -> None:
    cache = MemoryCache()
    checker = RevocationChecker(RevocationPolicy(), cache, network)
    first = checker.check(card, ca, network.now)
    assert (first.outcome, first.source) == (RevocationOutcome.GOOD, "ocsp")
    second = checker.check(card, ca, network.now + NEXT_UPDATE - dt.timedelta(seconds=1))
    assert (second.outcome, second.source) == (RevocationOutcome.GOOD, "cache")
    assert network.asked == [OCSP]
    checker.check(card, ca, network.now + NEXT_UPDATE + dt.timedelta(seconds=1))
    assert network.asked == [OCSP, OCSP]


def test_cache_time_is_capped_whatever_next_update_says(
    network: Network, card: x509.Certificate, ca: x509.Certificate
) -> None:
    cache = MemoryCache()
    policy = RevocationPolicy(max_cache_age=dt.timedelta(minutes=1))
    RevocationChecker(policy, cache, network).check(card, ca, network.now)
    ((_status, until),) = cache.entries.values()
    assert until == network.now + dt.timedelta(minutes=1)


def test_soft_fail_forgives_only_unreachable_sources(
    test_pki: TestPki, tmp_path: Path, network: Network, ca: x509.Certificate
) -> None:
    soft = RevocationChecker(RevocationPolicy(soft_fail=True), None, network)
    down = _card(test_pki, tmp_path, ocsp=DOWN, crl="")
    decision = soft.check(down, ca, network.now)
    assert decision.soft_failed and decision.outcome == RevocationOutcome.GOOD
    assert decision.source == "none" and "unreachable" in decision.detail

    invalid = _card(test_pki, tmp_path, ocsp=f"{OCSP}/{Misbehaviour.STALE}", crl="")
    with pytest.raises(RevocationProblem) as caught:
        soft.check(invalid, ca, network.now)
    assert caught.value.reason == "invalid" and "stale_response" in caught.value.detail

    nothing = _card(test_pki, tmp_path, ocsp="", crl="")
    with pytest.raises(RevocationProblem) as caught:
        soft.check(nothing, ca, network.now)
    assert caught.value.reason == "no_source"


def test_configured_ocsp_url_overrides_the_aia(
    test_pki: TestPki, tmp_path: Path, network: Network, ca: x509.Certificate
) -> None:
    down = _card(test_pki, tmp_path, ocsp=DOWN, crl="")
    checker = RevocationChecker(RevocationPolicy(ocsp_url=OCSP), None, network)
    assert checker.check(down, ca, network.now).source == "ocsp"
    assert network.asked == [OCSP]


def test_freshness_allows_the_configured_clock_skew(
    network: Network, card: x509.Certificate, ca: x509.Certificate
) -> None:
    checker = RevocationChecker(RevocationPolicy(clock_skew=dt.timedelta(minutes=5)), None, network)
    # Our clock is 4 minutes behind the responder's: thisUpdate lies in our future, within skew.
    assert checker.check(card, ca, network.now - dt.timedelta(minutes=4)).source == "ocsp"
    # 6 minutes is beyond it; the CRL (made at the same moment) is in the future too.
    with pytest.raises(RevocationProblem) as caught:
        checker.check(card, ca, network.now - dt.timedelta(minutes=6))
    assert "ocsp stale_response" in caught.value.detail and "crl stale_crl" in caught.value.detail
    # nextUpdate 4 minutes ago is still within skew.
    later = network.now + NEXT_UPDATE + dt.timedelta(minutes=4)
    assert checker.check(card, ca, later).outcome == RevocationOutcome.GOOD


def _response(
    request: bytes,
    signer: x509.Certificate,
    signer_key,  # type: ignore[no-untyped-def]
    now: dt.datetime,
    *,
    embed: bool,
) -> bytes:
    parsed = ocsp.load_der_ocsp_request(request)
    nonce = parsed.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=parsed.issuer_name_hash,
            issuer_key_hash=parsed.issuer_key_hash,
            serial_number=parsed.serial_number,
            algorithm=parsed.hash_algorithm,
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + NEXT_UPDATE,
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, signer)
        .add_extension(x509.OCSPNonce(nonce), critical=False)
    )
    if embed:
        builder = builder.certificates([signer])
    return builder.sign(signer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


class Replier:
    """A fetcher whose OCSP answers are made by ``reply(request)``."""

    def __init__(self, reply) -> None:  # type: ignore[no-untyped-def]
        self.reply = reply

    def __call__(self, url: str, body: bytes | None) -> bytes:
        assert body is not None, url
        return self.reply(body)


def test_response_signed_by_the_issuer_itself_is_accepted(
    test_pki: TestPki, card: x509.Certificate, ca: x509.Certificate
) -> None:
    issuer = load_issuer(test_pki.hsa_ca_cert, test_pki.hsa_ca_key)
    now = dt.datetime.now(dt.UTC)
    fetch = Replier(lambda body: _response(body, ca, issuer.key, now, embed=False))
    decision = RevocationChecker(RevocationPolicy(use_crl=False), None, fetch).check(card, ca, now)
    assert decision.outcome == RevocationOutcome.GOOD


def test_expired_delegated_responder_is_refused(
    test_pki: TestPki, card: x509.Certificate, ca: x509.Certificate
) -> None:
    issuer = load_issuer(test_pki.hsa_ca_cert, test_pki.hsa_ca_key)
    now = dt.datetime.now(dt.UTC)
    key = generate_key()
    expired = ocsp_responder_certificate(
        key,
        x509.Name.from_rfc4514_string("CN=expired responder,O=Inera AB,C=SE"),
        Issuer(issuer.certificate, issuer.key),
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    fetch = Replier(lambda body: _response(body, expired, key, now, embed=True))
    with pytest.raises(RevocationProblem) as caught:
        RevocationChecker(RevocationPolicy(use_crl=False), None, fetch).check(card, ca, now)
    assert "untrusted_responder" in caught.value.detail and "expired" in caught.value.detail


def test_delta_crl_is_not_taken_for_a_complete_one(
    test_pki: TestPki, tmp_path: Path, ca: x509.Certificate
) -> None:
    issuer = load_issuer(test_pki.hsa_ca_cert, test_pki.hsa_ca_key)
    now = dt.datetime.now(dt.UTC)
    delta = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now)
        .next_update(now + NEXT_UPDATE)
        .add_extension(x509.DeltaCRLIndicator(1), critical=True)
        .sign(issuer.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    card = _card(test_pki, tmp_path, ocsp="", crl=CRL)
    checker = RevocationChecker(RevocationPolicy(), None, lambda _url, _body: delta)
    with pytest.raises(RevocationProblem) as caught:
        checker.check(card, ca, now)
    assert "invalid_crl" in caught.value.detail


def test_database_cache_is_shared_between_nodes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    node_a, node_b = Database(url), Database(url)
    create_schema(node_a.engine)
    now = dt.datetime.now(dt.UTC)
    DatabaseRevocationCache(node_a).put("k", "good", now + dt.timedelta(seconds=30))
    cache_b = DatabaseRevocationCache(node_b)
    assert cache_b.get("k", now) == "good"
    assert cache_b.get("k", now + dt.timedelta(seconds=31)) is None
    assert cache_b.get("other", now) is None
    cache_b.put("k", "good", now + dt.timedelta(seconds=60))  # replaced, not duplicated
    assert DatabaseRevocationCache(node_a).get("k", now + dt.timedelta(seconds=45)) == "good"

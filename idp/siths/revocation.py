"""Revocation checking of SITHS certificates: OCSP first, the CRL as a fallback.

A lost card is revoked by its CA; from then on it must not log in. For each login the card's
status is asked of the OCSP responder named in the certificate (or a configured one), and the
answer is accepted only if it is

- signed by the card's issuer, or by a delegated responder certificate that the issuer signed
  and marked with id-kp-OCSPSigning;
- about exactly this certificate (CertID: hash algorithm, issuer name and key hashes, serial);
- fresh: ``thisUpdate`` not in the future and ``nextUpdate`` not in the past, within the
  configured clock skew (a response without ``nextUpdate`` cannot be judged fresh: refused);
- carrying back the nonce that was sent.

If OCSP gives no usable answer, the CRL from the certificate's distribution point is used (its
signature by the issuer and its ``nextUpdate`` checked). A good answer is cached until its
``nextUpdate``, in a cache the caller provides (the IdP's database, shared by every node).

Policy: fail closed. Revoked or unknown → refused; nothing usable from either source → refused.
``soft_fail`` lets a login proceed only when every source was *unreachable* (connection refused,
timeout, an HTTP error status): the decision says so and it is logged loudly. An answer that
arrived but is invalid (bad signature, stale, wrong certificate or nonce, garbage) is refused
even then, because that is what an attack or a broken responder looks like, not an outage.
With ``soft_fail``, a source found unreachable is not asked again for the policy's
``unreachable_retry`` (it counts as unreachable meanwhile), so that while a responder is down a
login neither waits for it nor for its timeout again. Failing closed, every login asks again:
there a remembered outage would refuse logins after the responder is back.
Everything here is synchronous: call it from a worker thread, or through
:class:`idp.blocking.BlockingCalls`, which moves a call that would ask a source to one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from idp.blocking import before_waiting
from idp.errors import Refusal

logger = logging.getLogger("idp.revocation")

MAX_RESPONSE_BYTES = 1024 * 1024
NONCE_BYTES = 16
# RevocationProblem.reason of a source that could not be asked at all: the only kind of
# failure soft-fail forgives.
UNREACHABLE = "unreachable"


class RevocationOutcome(StrEnum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


class RevocationProblem(Refusal):
    """No usable answer from one source; ``reason`` is a stable code for the audit trail:
    ``unreachable``, ``invalid_response``, ``bad_signature``, ``untrusted_responder``,
    ``stale_response``, ``wrong_certificate``, ``nonce_mismatch``, ``invalid_crl``,
    ``stale_crl``, ``no_source``; from :meth:`RevocationChecker.check`, ``unavailable`` (every
    source failed, ``detail`` lists why) or ``invalid`` (as ``unavailable``, but at least one
    answer arrived and was invalid, so soft-fail did not apply)."""


@dataclass(frozen=True)
class RevocationDecision:
    """What the check concluded. ``outcome`` GOOD lets the login on; ``soft_failed`` marks a
    login let through although no source answered (only with ``soft_fail``)."""

    outcome: RevocationOutcome
    source: str  # "ocsp", "crl", "cache" or "none"
    detail: str = ""
    soft_failed: bool = False
    revocation_reason: str = ""


class RevocationCache(Protocol):
    """Somewhere to keep good answers until their ``nextUpdate``; shared between nodes."""

    def get(self, key: str, now: dt.datetime) -> str | None: ...

    def put(self, key: str, status: str, until: dt.datetime) -> None: ...


Fetcher = Callable[[str, bytes | None], bytes]


@dataclass(frozen=True)
class RevocationPolicy:
    """How to check. ``max_cache_age`` caps how long a good answer is reused even when its
    ``nextUpdate`` lies further ahead, so a revocation is noticed within that time at worst."""

    soft_fail: bool = False
    clock_skew: dt.timedelta = dt.timedelta(minutes=5)
    timeout_seconds: float = 5.0
    ocsp_url: str = ""  # overrides the certificate's AIA when set
    use_crl: bool = True
    max_cache_age: dt.timedelta = dt.timedelta(hours=1)
    # With soft_fail: how long a source that could not be reached counts as unreachable without
    # being asked; zero: ask it at every check.
    unreachable_retry: dt.timedelta = dt.timedelta(seconds=30)


def http_fetch(timeout_seconds: float) -> Fetcher:
    """A fetcher that POSTs an OCSP request (``body`` given) or GETs a CRL, size-bounded.

    One HTTP client, created on first use, serves every call (thread-safe; keeps connections
    alive), so a cold-cache login does not also pay for a new client and TCP connection.
    """
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def client() -> httpx.Client:
        with lock:
            if not clients:
                clients.append(httpx.Client(timeout=timeout_seconds, follow_redirects=False))
            return clients[0]

    def fetch(url: str, body: bytes | None) -> bytes:
        if not url.startswith(("http://", "https://")):
            raise RevocationProblem(UNREACHABLE, f"unsupported URL {url[:100]}")
        method = "POST" if body is not None else "GET"
        headers = {"Content-Type": "application/ocsp-request"} if body is not None else {}
        try:
            with client().stream(method, url, content=body, headers=headers) as response:
                if response.status_code != 200:
                    raise RevocationProblem(UNREACHABLE, f"{url} answered {response.status_code}")
                data = bytearray()
                for chunk in response.iter_bytes():
                    data.extend(chunk)
                    if len(data) > MAX_RESPONSE_BYTES:
                        raise RevocationProblem("invalid_response", f"{url} sent too much")
                return bytes(data)
        except httpx.HTTPError as exc:
            raise RevocationProblem(UNREACHABLE, f"{url}: {type(exc).__name__}") from exc

    return fetch


class UnreachableSources:
    """The sources (URLs) that could not be reached lately, each until a moment. Per process
    (what one node saw of the network); thread-safe."""

    def __init__(self, retry: dt.timedelta) -> None:
        self._retry = retry
        self._until: dict[str, dt.datetime] = {}
        self._lock = threading.Lock()

    def fetch(self, fetch: Fetcher, url: str, body: bytes | None, now: dt.datetime) -> bytes:
        """``fetch(url, body)``, unless ``url`` was unreachable within the retry time: then
        :class:`RevocationProblem` ``unreachable`` at once. Remembers a source that turns out
        unreachable, and forgets one that answers."""
        with self._lock:
            until = self._until.get(url)
        if until is not None and now < until:
            raise RevocationProblem(UNREACHABLE, f"{url} was unreachable, next try after {until}")
        before_waiting(f"revocation source {url}")  # the network: not on the event loop
        try:
            data = fetch(url, body)
        except RevocationProblem as exc:
            if exc.reason == UNREACHABLE and self._retry > dt.timedelta(0):
                with self._lock:
                    self._until[url] = now + self._retry
            raise
        if until is not None:
            with self._lock:
                self._until.pop(url, None)
        return data


def _urls(certificate: x509.Certificate) -> tuple[list[str], list[str]]:
    ocsp_urls: list[str] = []
    crl_urls: list[str] = []
    try:
        aia = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
        for description in aia.value:
            if description.access_method == AuthorityInformationAccessOID.OCSP and isinstance(
                description.access_location, x509.UniformResourceIdentifier
            ):
                ocsp_urls.append(description.access_location.value)
    except x509.ExtensionNotFound:
        pass
    try:
        points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints)
        for point in points.value:
            for name in point.full_name or []:
                if isinstance(name, x509.UniformResourceIdentifier):
                    crl_urls.append(name.value)
    except x509.ExtensionNotFound:
        pass
    return ocsp_urls, crl_urls


def cache_key(certificate: x509.Certificate, issuer: x509.Certificate) -> str:
    issuer_key = issuer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"{hashlib.sha256(issuer_key).hexdigest()[:32]}:{certificate.serial_number:x}"


def _verify_signature(
    signer: x509.Certificate, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm | None
) -> bool:
    if algorithm is None:
        return False
    key = signer.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _as_utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class RevocationChecker:
    """Checks one certificate against its issuer; see the module docstring for the rules."""

    def __init__(
        self,
        policy: RevocationPolicy,
        cache: RevocationCache | None = None,
        fetch: Fetcher | None = None,
    ) -> None:
        self._policy = policy
        self._cache = cache
        self._fetch = fetch or http_fetch(policy.timeout_seconds)
        self._unreachable = UnreachableSources(
            policy.unreachable_retry if policy.soft_fail else dt.timedelta(0)
        )

    def check(
        self, certificate: x509.Certificate, issuer: x509.Certificate, now: dt.datetime
    ) -> RevocationDecision:
        key = cache_key(certificate, issuer)
        if self._cache is not None and self._cache.get(key, now) == RevocationOutcome.GOOD:
            return RevocationDecision(RevocationOutcome.GOOD, "cache")
        ocsp_urls, crl_urls = _urls(certificate)
        if self._policy.ocsp_url:
            ocsp_urls = [self._policy.ocsp_url]
        problems: list[RevocationProblem] = []
        for url in ocsp_urls[:2]:
            try:
                decision, until = self._ask_ocsp(url, certificate, issuer, now)
            except RevocationProblem as exc:
                problems.append(RevocationProblem(exc.reason, f"ocsp {exc.reason}: {exc.detail}"))
                continue
            return self._remember(key, decision, until, now)
        if self._policy.use_crl:
            for url in crl_urls[:2]:
                try:
                    decision, until = self._read_crl(url, certificate, issuer, now)
                except RevocationProblem as exc:
                    problems.append(
                        RevocationProblem(exc.reason, f"crl {exc.reason}: {exc.detail}")
                    )
                    continue
                return self._remember(key, decision, until, now)
        if not problems:
            raise RevocationProblem(
                "no_source", "the certificate names no OCSP responder or CRL to ask"
            )
        detail = "; ".join(problem.detail for problem in problems)
        if any(problem.reason != UNREACHABLE for problem in problems):
            raise RevocationProblem("invalid", detail)
        if self._policy.soft_fail:
            logger.error(
                "REVOCATION SOFT-FAIL: login allowed WITHOUT revocation status of serial %x: %s",
                certificate.serial_number,
                detail,
            )
            return RevocationDecision(RevocationOutcome.GOOD, "none", detail, soft_failed=True)
        raise RevocationProblem("unavailable", detail)

    def _remember(
        self, key: str, decision: RevocationDecision, until: dt.datetime, now: dt.datetime
    ) -> RevocationDecision:
        if self._cache is not None and decision.outcome == RevocationOutcome.GOOD:
            self._cache.put(
                key, decision.outcome.value, min(until, now + self._policy.max_cache_age)
            )
        return decision

    # --- OCSP --------------------------------------------------------------------------------

    def _ask_ocsp(
        self, url: str, certificate: x509.Certificate, issuer: x509.Certificate, now: dt.datetime
    ) -> tuple[RevocationDecision, dt.datetime]:
        nonce = os.urandom(NONCE_BYTES)
        request = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(certificate, issuer, hashes.SHA256())
            .add_extension(x509.OCSPNonce(nonce), critical=False)
            .build()
        )
        der = request.public_bytes(serialization.Encoding.DER)
        body = self._unreachable.fetch(self._fetch, url, der, now)
        try:
            return self._judge_ocsp(body, nonce, certificate, issuer, now)
        except (ValueError, UnsupportedAlgorithm) as exc:
            # Parsed lazily by cryptography: a malformed field surfaces here, not at load.
            raise RevocationProblem("invalid_response", f"malformed OCSP response: {exc}") from exc

    def _judge_ocsp(
        self,
        body: bytes,
        nonce: bytes,
        certificate: x509.Certificate,
        issuer: x509.Certificate,
        now: dt.datetime,
    ) -> tuple[RevocationDecision, dt.datetime]:
        try:
            response = ocsp.load_der_ocsp_response(body)
        except ValueError as exc:
            raise RevocationProblem("invalid_response", "not an OCSP response") from exc
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise RevocationProblem("invalid_response", f"status {response.response_status.name}")
        signer = self._ocsp_signer(response, issuer, now)
        if not _verify_signature(
            signer,
            response.signature,
            response.tbs_response_bytes,
            response.signature_hash_algorithm,
        ):
            raise RevocationProblem("bad_signature", "the OCSP response signature does not verify")
        single = self._matching_single_response(response, certificate, issuer)
        this_update = _as_utc(single.this_update_utc)
        next_update = single.next_update_utc
        skew = self._policy.clock_skew
        if this_update > now + skew:
            raise RevocationProblem("stale_response", f"thisUpdate {this_update} is in the future")
        if next_update is None or _as_utc(next_update) < now - skew:
            raise RevocationProblem("stale_response", f"nextUpdate {next_update} has passed")
        try:
            echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            echoed = None
        if echoed != nonce:
            raise RevocationProblem("nonce_mismatch", "the response does not carry our nonce")
        return self._decision("ocsp", single.certificate_status, single), _as_utc(next_update)

    def _ocsp_signer(
        self, response: ocsp.OCSPResponse, issuer: x509.Certificate, now: dt.datetime
    ) -> x509.Certificate:
        if self._names_responder(response, issuer):
            return issuer
        for candidate in response.certificates:
            if not self._names_responder(response, candidate):
                continue
            try:
                candidate.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature) as exc:
                raise RevocationProblem(
                    "untrusted_responder", "the responder certificate is not from the issuer"
                ) from exc
            try:
                eku = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except x509.ExtensionNotFound:
                eku = x509.ExtendedKeyUsage([])
            if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
                raise RevocationProblem(
                    "untrusted_responder", "the responder certificate lacks id-kp-OCSPSigning"
                )
            skew = self._policy.clock_skew
            if not (
                candidate.not_valid_before_utc - skew <= now <= candidate.not_valid_after_utc + skew
            ):
                raise RevocationProblem("untrusted_responder", "the responder certificate expired")
            return candidate
        raise RevocationProblem(
            "untrusted_responder", "signed by neither the issuer nor a delegated responder"
        )

    @staticmethod
    def _names_responder(response: ocsp.OCSPResponse, candidate: x509.Certificate) -> bool:
        if response.responder_name is not None:
            return response.responder_name == candidate.subject
        key_hash = x509.SubjectKeyIdentifier.from_public_key(candidate.public_key()).digest
        return response.responder_key_hash == key_hash

    @staticmethod
    def _matching_single_response(
        response: ocsp.OCSPResponse, certificate: x509.Certificate, issuer: x509.Certificate
    ) -> ocsp.OCSPSingleResponse:
        for single in response.responses:
            # The CertID as we would compute it with the responder's hash algorithm.
            try:
                expected = (
                    ocsp.OCSPRequestBuilder()
                    .add_certificate(certificate, issuer, single.hash_algorithm)
                    .build()
                )
            except (ValueError, UnsupportedAlgorithm):
                continue  # a CertID hash we do not compute cannot be ours
            if (
                single.serial_number == certificate.serial_number
                and single.issuer_key_hash == expected.issuer_key_hash
                and single.issuer_name_hash == expected.issuer_name_hash
            ):
                return single
        raise RevocationProblem("wrong_certificate", "the response is about another certificate")

    @staticmethod
    def _decision(
        source: str, status: ocsp.OCSPCertStatus, single: ocsp.OCSPSingleResponse
    ) -> RevocationDecision:
        if status == ocsp.OCSPCertStatus.GOOD:
            return RevocationDecision(RevocationOutcome.GOOD, source)
        if status == ocsp.OCSPCertStatus.REVOKED:
            reason = single.revocation_reason.value if single.revocation_reason else ""
            return RevocationDecision(
                RevocationOutcome.REVOKED,
                source,
                f"revoked {single.revocation_time_utc}",
                revocation_reason=reason,
            )
        return RevocationDecision(
            RevocationOutcome.UNKNOWN, source, "the responder does not know it"
        )

    # --- CRL ---------------------------------------------------------------------------------

    def _read_crl(
        self, url: str, certificate: x509.Certificate, issuer: x509.Certificate, now: dt.datetime
    ) -> tuple[RevocationDecision, dt.datetime]:
        data = self._unreachable.fetch(self._fetch, url, None, now)
        try:
            crl = (
                x509.load_pem_x509_crl(data)
                if data.lstrip().startswith(b"-----")
                else x509.load_der_x509_crl(data)
            )
        except ValueError as exc:
            raise RevocationProblem("invalid_crl", "not a CRL") from exc
        try:
            return self._judge_crl(crl, certificate, issuer, now)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise RevocationProblem("invalid_crl", f"malformed CRL: {exc}") from exc

    def _judge_crl(
        self,
        crl: x509.CertificateRevocationList,
        certificate: x509.Certificate,
        issuer: x509.Certificate,
        now: dt.datetime,
    ) -> tuple[RevocationDecision, dt.datetime]:
        if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):
            raise RevocationProblem("bad_signature", "the CRL is not signed by the issuer")
        with contextlib.suppress(x509.ExtensionNotFound):
            crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
            # A delta CRL lists only recent changes: "not listed" there does not mean good.
            raise RevocationProblem("invalid_crl", "a delta CRL, not a complete one")
        next_update = crl.next_update_utc
        skew = self._policy.clock_skew
        if next_update is None or next_update < now - skew:
            raise RevocationProblem("stale_crl", f"the CRL's nextUpdate {next_update} has passed")
        if crl.last_update_utc > now + skew:
            raise RevocationProblem("stale_crl", "the CRL's thisUpdate is in the future")
        revoked = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
        if revoked is not None:
            reason = ""
            with contextlib.suppress(x509.ExtensionNotFound):
                reason = revoked.extensions.get_extension_for_class(
                    x509.CRLReason
                ).value.reason.value
            return (
                RevocationDecision(
                    RevocationOutcome.REVOKED,
                    "crl",
                    f"revoked {revoked.revocation_date_utc}",
                    revocation_reason=reason,
                ),
                next_update,
            )
        return RevocationDecision(RevocationOutcome.GOOD, "crl"), next_update


SOFT_FAIL_REASON = "revocation_soft_fail"


def audit_note(decision: RevocationDecision | None) -> str:
    """How revocation was decided for a login, for the detail of its audit event."""
    if decision is None:
        return "revocation not checked"
    if decision.soft_failed:
        return f"REVOCATION SOFT-FAIL, status unknown, no source reachable: {decision.detail}"
    return f"revocation {decision.outcome.value} by {decision.source}"


def audit_reason(decision: RevocationDecision | None) -> str:
    """The audit ``reason`` of a *successful* login: empty, or ``revocation_soft_fail``."""
    return SOFT_FAIL_REASON if decision is not None and decision.soft_failed else ""

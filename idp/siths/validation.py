"""Validate a SITHS authentication certificate and read the HSA-ID from it.

:meth:`SithsValidator.validate` is the one check every login method uses: the card on this
device (the embedded certificate listener, or nginx's ``X-SSL-Client-Cert`` in proxy mode) and
the SITHS eID app on another device. :func:`check_card_key` is the key rule on its own, which
the app's signature check applies before it uses a key at all.

What a card certificate must be
-------------------------------
The certificate accepted is the SITHS e-id person authentication certificate with the HSA-ID
("SITHS e-id Person HSA-id 3 CA v1"), whose profile carries:

- keyUsage with digitalSignature (SITHS marks it critical): the key signs TLS handshakes and
  the app's challenges. Other bits may be set, never keyCertSign.
- extendedKeyUsage, present and containing clientAuth. SITHS adds others to some certificates
  (e.g. emailProtection, Microsoft smartcardLogon); they are allowed beside clientAuth.
- the HSA-ID in the subject ``serialNumber``.
- no CA rights: basicConstraints absent or cA=false.
- a key SITHS issues and current guidance allows: RSA of at least 2048 bits with public
  exponent 65537, or EC on P-256, P-384 or P-521.

Exactly that is enforced, for every channel alike:

1. ``cryptography.x509.verification`` builds and checks the path (chain to a configured anchor,
   validity, the Web PKI rules for the CAs and their keys) with the Web PKI end-entity policy
   for the leaf, its basicConstraints, keyUsage and extendedKeyUsage rules replaced by the
   ones above (the defaults let a certificate without extendedKeyUsage through);
2. then the leaf's key (:func:`check_card_key`; the verifier checks only the CAs' keys);
3. then the HSA-ID, and whether its organisation is accepted;
4. then revocation, when a checker is configured.

A refusal names its reason (:class:`RejectionReason`); each rule has its own code.
Criticality of keyUsage is not checked: it only tells a verifier that does not understand the
extension to refuse, and this one understands it.

What is remembered
------------------
Checks 1–3 depend only on the card certificate, the validator's fixed trust and rules, and
the time; and on the time only through the validity periods of the certificates on the path.
So a card that passed them is remembered (by its exact DER, at most
:data:`REMEMBERED_CARDS`, least recently used first out) with the window in which every
certificate of its path is valid, and a later login with the same card inside that window
takes the remembered result instead of building the path again (a tenth of a millisecond of
CPU and more). What the client presents beside the card does not matter: a verified path is
valid whoever sends it. Refusals are never remembered, and revocation (4) is checked on every
login.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from idp.errors import Refusal
from idp.hsa_id import HsaId, InvalidHsaId, parse_hsa_id
from idp.siths.revocation import (
    RevocationChecker,
    RevocationDecision,
    RevocationOutcome,
    RevocationProblem,
)
from idp.siths.trust import SithsTrust

# SITHS chains are root → issuing CA → card: allow a little more, never unbounded.
MAX_CHAIN_DEPTH = 4

# The card keys accepted (see the module docstring).
MIN_RSA_BITS = 2048
RSA_PUBLIC_EXPONENT = 65537
CARD_CURVES: tuple[type[ec.EllipticCurve], ...] = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)

# Certificates kept parsed by load_certificate, by their bytes (PEM or DER, a few kilobytes each).
READ_CERTIFICATES_KEPT = 1024

# Cards whose path and profile checks are remembered (see "What is remembered" above). Each
# keeps its parsed certificate (about 7 KB of Python objects): about 30 MB per process when full.
REMEMBERED_CARDS = 4096

_Extension = TypeVar("_Extension", bound=x509.ExtensionType)


class RejectionReason(StrEnum):
    """Why a certificate was refused. The values are stable codes for integrators and audit."""

    NO_CERTIFICATE = "no_certificate"
    UNREADABLE = "unreadable_certificate"
    UNTRUSTED = "untrusted_issuer"
    EXPIRED = "certificate_expired"
    NOT_YET_VALID = "certificate_not_yet_valid"
    WEAK_KEY = "weak_key"
    WRONG_KEY_USAGE = "wrong_key_usage"
    WRONG_EXTENDED_KEY_USAGE = "wrong_extended_key_usage"
    NO_HSA_ID = "no_hsa_id"
    MALFORMED_HSA_ID = "malformed_hsa_id"
    ORGANISATION_NOT_ACCEPTED = "organisation_not_accepted"
    REVOKED = "certificate_revoked"
    REVOCATION_UNKNOWN = "revocation_status_unknown"
    REVOCATION_UNAVAILABLE = "revocation_unavailable"


class CertificateRejected(Refusal):
    """The certificate may not be used to log in. ``reason`` says which check failed;
    ``hsa_id`` is the certificate's HSA-ID when it was read before the refusal (the revocation
    reasons), else empty: for the audit trail, who tried."""

    reason: RejectionReason

    def __init__(self, reason: RejectionReason, detail: str, *, hsa_id: str = "") -> None:
        super().__init__(reason, detail)
        self.hsa_id = hsa_id


@dataclass(frozen=True)
class ValidatedCertificate:
    """A certificate that passed every check, with what the login needs from it."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    hsa_id: HsaId
    given_name: str
    surname: str
    fingerprint_sha256: str
    revocation: RevocationDecision | None = None


def check_card_key(key: CertificatePublicKeyTypes) -> None:
    """Return if ``key`` is one a card may have, else raise :class:`CertificateRejected`
    (``weak_key``): RSA of at least :data:`MIN_RSA_BITS` bits with public exponent 65537, or
    EC on one of :data:`CARD_CURVES`. Any other key type is refused too."""
    if isinstance(key, rsa.RSAPublicKey):
        exponent = key.public_numbers().e
        if key.key_size < MIN_RSA_BITS or exponent != RSA_PUBLIC_EXPONENT:
            raise CertificateRejected(
                RejectionReason.WEAK_KEY,
                f"RSA-{key.key_size} with public exponent {exponent}; accepted is RSA of at "
                f"least {MIN_RSA_BITS} bits with exponent {RSA_PUBLIC_EXPONENT}",
            )
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, CARD_CURVES):
            raise CertificateRejected(
                RejectionReason.WEAK_KEY,
                f"EC key on {key.curve.name}; accepted curves are P-256, P-384 and P-521",
            )
        return
    raise CertificateRejected(
        RejectionReason.WEAK_KEY, f"{type(key).__name__} keys are not accepted; RSA or EC only"
    )


# The leaf's extension rules, each a function of the extension's value (``None``: absent) that
# names what is wrong, so that the verifier's policy and the diagnosis of a refusal share them.


def _key_usage_problem(key_usage: x509.KeyUsage | None) -> str | None:
    if key_usage is None:
        return "the certificate has no keyUsage extension"
    if not key_usage.digital_signature:
        return "keyUsage lacks digitalSignature"
    if key_usage.key_cert_sign:
        return "keyUsage asserts keyCertSign, which only a CA has"
    return None


def _extended_key_usage_problem(eku: x509.ExtendedKeyUsage | None) -> str | None:
    if eku is None:
        return "the certificate has no extendedKeyUsage extension"
    if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        return "extendedKeyUsage lacks clientAuth"
    return None


def _basic_constraints_problem(constraints: x509.BasicConstraints | None) -> str | None:
    if constraints is not None and constraints.ca:
        return "basicConstraints asserts cA: a CA certificate is not a card"
    return None


def _enforce(
    problem: Callable[[Any], str | None],
) -> Callable[[object, x509.Certificate, Any], None]:
    """An ExtensionPolicy validator (which signals a refusal by raising) from a rule above."""

    def validator(_policy: object, _cert: x509.Certificate, value: Any) -> None:
        found = problem(value)
        if found is not None:
            raise ValueError(found)

    return validator


def _leaf_policy() -> ExtensionPolicy:
    # Setting a validator replaces the default one entirely (the Web PKI keyUsage check, which
    # refused keyCertSign, is gone once ours is set), so each rule above is complete in itself.
    return (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(
            x509.BasicConstraints, Criticality.AGNOSTIC, _enforce(_basic_constraints_problem)
        )
        .require_present(x509.KeyUsage, Criticality.AGNOSTIC, _enforce(_key_usage_problem))
        .require_present(
            x509.ExtendedKeyUsage,
            Criticality.AGNOSTIC,
            _enforce(_extended_key_usage_problem),
        )
    )


@dataclass(frozen=True)
class _RememberedCard:
    """A card that passed checks 1–3, and the window in which its path is valid."""

    validated: ValidatedCertificate
    valid_from: dt.datetime
    valid_until: dt.datetime


class RememberedCards:
    """Cards that passed checks 1–3, by certificate (whose equality and hash are its DER's)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._cards: OrderedDict[x509.Certificate, _RememberedCard] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, certificate: x509.Certificate, moment: dt.datetime
    ) -> ValidatedCertificate | None:
        """The remembered result for ``certificate``, if its path is valid at ``moment``."""
        with self._lock:
            remembered = self._cards.get(certificate)
            if remembered is None:
                return None
            if not remembered.valid_from <= moment <= remembered.valid_until:
                # Outside the window the checks must run again, to say what is wrong now.
                del self._cards[certificate]
                return None
            self._cards.move_to_end(certificate)
            return remembered.validated

    def remember(self, validated: ValidatedCertificate) -> None:
        """Keep ``validated`` (checks 1–3 passed, no revocation decision) for its path's window."""
        remembered = _RememberedCard(
            validated,
            valid_from=max(cert.not_valid_before_utc for cert in validated.chain),
            valid_until=min(cert.not_valid_after_utc for cert in validated.chain),
        )
        with self._lock:
            self._cards[validated.certificate] = remembered
            self._cards.move_to_end(validated.certificate)
            while len(self._cards) > self._capacity:
                self._cards.popitem(last=False)


class SithsValidator:
    """Validates certificates against one :class:`SithsTrust`. Safe to share between threads."""

    def __init__(
        self,
        trust: SithsTrust,
        accepted_organisations: Collection[str],
        revocation: RevocationChecker | None = None,
    ) -> None:
        self._revocation = revocation
        self._store = Store(list(trust.anchors))
        self._intermediates = list(trust.intermediates)
        self._anchors = list(trust.anchors)
        self._accepted = frozenset(accepted_organisations)
        self._remembered = RememberedCards(REMEMBERED_CARDS)

    def validate(
        self,
        certificate: x509.Certificate,
        presented_intermediates: Sequence[x509.Certificate] = (),
        *,
        now: dt.datetime | None = None,
    ) -> ValidatedCertificate:
        """Return the validated certificate or raise :class:`CertificateRejected`."""
        moment = now or dt.datetime.now(dt.UTC)
        validated = self._remembered.get(certificate, moment)
        if validated is None:
            validated = self._check_path_and_profile(certificate, presented_intermediates, moment)
            self._remembered.remember(validated)
        decision = self._check_revocation(certificate, validated.chain[1], moment, validated.hsa_id)
        return dataclasses.replace(validated, revocation=decision)

    def _check_path_and_profile(
        self,
        certificate: x509.Certificate,
        presented_intermediates: Sequence[x509.Certificate],
        moment: dt.datetime,
    ) -> ValidatedCertificate:
        """Checks 1–3 of the module docstring: the path, the card's key and its HSA-ID."""
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(moment)
            .max_chain_depth(MAX_CHAIN_DEPTH)
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_leaf_policy()
            )
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(
                certificate, [*presented_intermediates, *self._intermediates]
            )
        except VerificationError as exc:
            raise _diagnose(
                certificate,
                [*presented_intermediates, *self._intermediates, *self._anchors],
                moment,
                str(exc),
            ) from exc
        check_card_key(certificate.public_key())
        hsa_id = _read_hsa_id(certificate)
        if hsa_id.organisation_number not in self._accepted:
            raise CertificateRejected(
                RejectionReason.ORGANISATION_NOT_ACCEPTED,
                f"HSA-ID {hsa_id.value} belongs to organisation {hsa_id.organisation_number},"
                " which this service does not accept",
            )
        return ValidatedCertificate(
            certificate=certificate,
            chain=tuple(verified.chain),
            hsa_id=hsa_id,
            given_name=_first_attribute(certificate.subject, NameOID.GIVEN_NAME),
            surname=_first_attribute(certificate.subject, NameOID.SURNAME),
            fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(),
        )

    def _check_revocation(
        self,
        certificate: x509.Certificate,
        issuer: x509.Certificate,
        moment: dt.datetime,
        hsa_id: HsaId,
    ) -> RevocationDecision | None:
        """Only after the path is valid: a revocation answer is only as good as its issuer."""
        if self._revocation is None:
            return None
        try:
            decision = self._revocation.check(certificate, issuer, moment)
        except RevocationProblem as exc:
            raise CertificateRejected(
                RejectionReason.REVOCATION_UNAVAILABLE,
                f"{exc.reason}: {exc.detail}",
                hsa_id=hsa_id.value,
            ) from exc
        if decision.outcome == RevocationOutcome.REVOKED:
            raise CertificateRejected(
                RejectionReason.REVOKED,
                f"revoked ({decision.revocation_reason or 'no reason given'}), "
                f"by {decision.source}: {decision.detail}",
                hsa_id=hsa_id.value,
            )
        if decision.outcome == RevocationOutcome.UNKNOWN:
            raise CertificateRejected(
                RejectionReason.REVOCATION_UNKNOWN,
                f"{decision.source}: {decision.detail}",
                hsa_id=hsa_id.value,
            )
        return decision


def _first_attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def _read_hsa_id(certificate: x509.Certificate) -> HsaId:
    values = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if not values:
        raise CertificateRejected(
            RejectionReason.NO_HSA_ID, "the certificate subject has no serialNumber (HSA-ID)"
        )
    if len(values) > 1:
        raise CertificateRejected(
            RejectionReason.MALFORMED_HSA_ID, "the certificate subject has several serialNumbers"
        )
    try:
        return parse_hsa_id(str(values[0].value))
    except InvalidHsaId as exc:
        raise CertificateRejected(RejectionReason.MALFORMED_HSA_ID, str(exc)) from exc


def _issued_by_any(certificate: x509.Certificate, issuers: Sequence[x509.Certificate]) -> bool:
    for issuer in issuers:
        if issuer.subject != certificate.issuer:
            continue
        try:
            certificate.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _diagnose(
    certificate: x509.Certificate,
    issuers: Sequence[x509.Certificate],
    moment: dt.datetime,
    message: str,
) -> CertificateRejected:
    """Name the most useful reason for a failed verification.

    The verifier has already refused the certificate; this only chooses what to tell the user.
    A certificate not signed by a known CA (a forgery with copied names included) is
    "untrusted" whatever else is wrong with it; otherwise the common defects are named.
    """
    if not _issued_by_any(certificate, issuers):
        return CertificateRejected(RejectionReason.UNTRUSTED, "not issued by a SITHS CA")
    if moment > certificate.not_valid_after_utc:
        return CertificateRejected(
            RejectionReason.EXPIRED, f"expired {certificate.not_valid_after_utc.isoformat()}"
        )
    if moment < certificate.not_valid_before_utc:
        return CertificateRejected(
            RejectionReason.NOT_YET_VALID,
            f"valid from {certificate.not_valid_before_utc.isoformat()}",
        )
    try:
        # The verifier refuses no leaf for its key today; should a later version, say why.
        check_card_key(certificate.public_key())
    except CertificateRejected as weak:
        return weak
    for reason, problem in (
        (
            RejectionReason.WRONG_KEY_USAGE,
            _basic_constraints_problem(_extension(certificate, x509.BasicConstraints)),
        ),
        (
            RejectionReason.WRONG_KEY_USAGE,
            _key_usage_problem(_extension(certificate, x509.KeyUsage)),
        ),
        (
            RejectionReason.WRONG_EXTENDED_KEY_USAGE,
            _extended_key_usage_problem(_extension(certificate, x509.ExtendedKeyUsage)),
        ),
    ):
        if problem is not None:
            return CertificateRejected(reason, problem)
    return CertificateRejected(RejectionReason.UNTRUSTED, message)


def _extension(certificate: x509.Certificate, kind: type[_Extension]) -> _Extension | None:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


@functools.lru_cache(maxsize=READ_CERTIFICATES_KEPT)
def load_certificate(data: bytes) -> x509.Certificate:
    """Parse a PEM or DER certificate, or raise :class:`CertificateRejected` (unreadable).

    cryptography reads the names, extensions and key only when they are first asked for, so
    they are asked for here: a certificate whose subject cannot be parsed is unreadable now,
    not a ``ValueError`` from deep inside the validation later.

    The certificates read last are kept by their bytes (a certificate object is immutable):
    a card logging in again is not parsed again. Refusals are not kept.
    """
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            certificate = x509.load_pem_x509_certificate(data)
        else:
            certificate = x509.load_der_x509_certificate(data)
        _parsed = (
            certificate.subject,
            certificate.issuer,
            certificate.extensions,
            certificate.public_key(),
        )
    except (
        ValueError,
        x509.InvalidVersion,
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
        UnsupportedAlgorithm,
    ) as exc:
        raise CertificateRejected(RejectionReason.UNREADABLE, "not an X.509 certificate") from exc
    return certificate

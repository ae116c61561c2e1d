"""Validate a SITHS authentication certificate and read the HSA-ID from it.

One function, :func:`validate_siths_certificate`, used by every login method: the path is
built and checked by ``cryptography.x509.verification`` (chain to a configured anchor, validity,
the Web PKI profile's extension rules, extended key usage clientAuth) with key usage
digitalSignature required on the leaf; then the HSA-ID is read from the subject
``serialNumber`` and checked against the accepted organisations.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

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


class RejectionReason(StrEnum):
    """Why a certificate was refused. The values are stable codes for integrators and audit."""

    NO_CERTIFICATE = "no_certificate"
    UNREADABLE = "unreadable_certificate"
    UNTRUSTED = "untrusted_issuer"
    EXPIRED = "certificate_expired"
    NOT_YET_VALID = "certificate_not_yet_valid"
    WRONG_KEY_USAGE = "wrong_key_usage"
    WRONG_EXTENDED_KEY_USAGE = "wrong_extended_key_usage"
    NO_HSA_ID = "no_hsa_id"
    MALFORMED_HSA_ID = "malformed_hsa_id"
    ORGANISATION_NOT_ACCEPTED = "organisation_not_accepted"
    REVOKED = "certificate_revoked"
    REVOCATION_UNKNOWN = "revocation_status_unknown"
    REVOCATION_UNAVAILABLE = "revocation_unavailable"


class CertificateRejected(Exception):
    """The certificate may not be used to log in. ``reason`` says which check failed;
    ``hsa_id`` is the certificate's HSA-ID when it was read before the refusal (the revocation
    reasons), else empty: for the audit trail, who tried."""

    def __init__(self, reason: RejectionReason, detail: str, *, hsa_id: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
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


def _require_digital_signature(
    _policy: object, _cert: x509.Certificate, key_usage: x509.KeyUsage | None
) -> None:
    if key_usage is None or not key_usage.digital_signature:
        raise ValueError("key usage digitalSignature is required")


def _leaf_policy() -> ExtensionPolicy:
    return ExtensionPolicy.webpki_defaults_ee().require_present(
        x509.KeyUsage, Criticality.AGNOSTIC, _require_digital_signature
    )


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

    def validate(
        self,
        certificate: x509.Certificate,
        presented_intermediates: Sequence[x509.Certificate] = (),
        *,
        now: dt.datetime | None = None,
    ) -> ValidatedCertificate:
        """Return the validated certificate or raise :class:`CertificateRejected`."""
        moment = now or dt.datetime.now(dt.UTC)
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
        hsa_id = _read_hsa_id(certificate)
        if hsa_id.organisation_number not in self._accepted:
            raise CertificateRejected(
                RejectionReason.ORGANISATION_NOT_ACCEPTED,
                f"HSA-ID {hsa_id.value} belongs to organisation {hsa_id.organisation_number},"
                " which this service does not accept",
            )
        decision = self._check_revocation(certificate, verified.chain[1], moment, hsa_id)
        return ValidatedCertificate(
            certificate=certificate,
            chain=tuple(verified.chain),
            revocation=decision,
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
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        return CertificateRejected(
            RejectionReason.WRONG_EXTENDED_KEY_USAGE, "extended key usage lacks clientAuth"
        )
    try:
        key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        key_usage = None
    if key_usage is None or not key_usage.digital_signature:
        return CertificateRejected(
            RejectionReason.WRONG_KEY_USAGE, "key usage lacks digitalSignature"
        )
    return CertificateRejected(RejectionReason.UNTRUSTED, message)


def load_certificate(data: bytes) -> x509.Certificate:
    """Parse a PEM or DER certificate, or raise :class:`CertificateRejected` (unreadable)."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CertificateRejected(RejectionReason.UNREADABLE, "not an X.509 certificate") from exc

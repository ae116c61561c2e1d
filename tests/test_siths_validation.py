"""SITHS certificate validation on the test PKI, without HTTP."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from idp.config import GOTEBORGS_STAD_ORG_NUMBER
from idp.hsa_id import InvalidHsaId, parse_hsa_id
from idp.pki import TestPki
from idp.siths.trust import load_siths_trust
from idp.siths.validation import (
    CertificateRejected,
    RejectionReason,
    SithsValidator,
    load_certificate,
)


@pytest.fixture(scope="module")
def validator(test_pki: TestPki) -> SithsValidator:
    trust = load_siths_trust(test_pki.trust_anchors_file, test_pki.intermediates_file)
    return SithsValidator(trust, [GOTEBORGS_STAD_ORG_NUMBER])


def card_certificate(test_pki: TestPki, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(test_pki.cards[name].cert.read_bytes())


def test_good_card_gives_its_hsa_id(test_pki: TestPki, validator: SithsValidator) -> None:
    validated = validator.validate(card_certificate(test_pki, "anna"))
    assert validated.hsa_id.value == "SE2120001355-E0001"
    assert validated.hsa_id.organisation_number == GOTEBORGS_STAD_ORG_NUMBER
    assert (validated.given_name, validated.surname) == ("Anna", "Andersson")
    assert len(validated.chain) == 3
    assert len(validated.fingerprint_sha256) == 64


@pytest.mark.parametrize(
    ("card", "reason"),
    [
        ("forged", RejectionReason.UNTRUSTED),
        ("expired", RejectionReason.EXPIRED),
        ("not_yet_valid", RejectionReason.NOT_YET_VALID),
        ("wrong_eku", RejectionReason.WRONG_EXTENDED_KEY_USAGE),
        ("wrong_key_usage", RejectionReason.WRONG_KEY_USAGE),
        ("no_hsa_id", RejectionReason.NO_HSA_ID),
        ("malformed_hsa_id", RejectionReason.MALFORMED_HSA_ID),
        ("other_org", RejectionReason.ORGANISATION_NOT_ACCEPTED),
        ("erik_private", RejectionReason.ORGANISATION_NOT_ACCEPTED),
    ],
)
def test_bad_card_is_rejected_with_its_reason(
    test_pki: TestPki, validator: SithsValidator, card: str, reason: RejectionReason
) -> None:
    with pytest.raises(CertificateRejected) as raised:
        validator.validate(card_certificate(test_pki, card))
    assert raised.value.reason is reason


def test_forged_intermediate_sent_by_the_client_does_not_help(
    test_pki: TestPki, validator: SithsValidator
) -> None:
    forged_ca = x509.load_pem_x509_certificates(
        (test_pki.directory / "forged" / "hsa-id-ca.crt.pem").read_bytes()
    )
    with pytest.raises(CertificateRejected) as raised:
        validator.validate(card_certificate(test_pki, "forged"), forged_ca)
    assert raised.value.reason is RejectionReason.UNTRUSTED


def test_card_expires_at_its_not_after(test_pki: TestPki, validator: SithsValidator) -> None:
    certificate = card_certificate(test_pki, "anna")
    later = certificate.not_valid_after_utc + dt.timedelta(seconds=1)
    with pytest.raises(CertificateRejected) as raised:
        validator.validate(certificate, now=later)
    assert raised.value.reason is RejectionReason.EXPIRED


def test_garbage_is_unreadable() -> None:
    with pytest.raises(CertificateRejected) as raised:
        load_certificate(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert raised.value.reason is RejectionReason.UNREADABLE


@pytest.mark.parametrize(
    "text",
    [
        "SE2120001355E0001",
        "SE212000135-E0001",
        "se2120001355-E0001",
        "SE2120001355-",
        "SE2120001355-E00-1",
        "SE2120001355-" + "A" * 19,
        "SE2120001355-E0001\n",
    ],
)
def test_malformed_hsa_ids_are_refused(text: str) -> None:
    with pytest.raises(InvalidHsaId):
        parse_hsa_id(text)


def test_longest_hsa_id_is_accepted() -> None:
    assert parse_hsa_id("SE2120001355-" + "A" * 18).organisation_number == "2120001355"

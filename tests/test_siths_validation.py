"""SITHS certificate validation on the test PKI, without HTTP."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from idp.config import GOTEBORGS_STAD_ORG_NUMBER
from idp.hsa_id import InvalidHsaId, parse_hsa_id
from idp.methods.other_device.signature import signature_is_valid
from idp.siths.trust import load_siths_trust
from idp.siths.validation import (
    CertificateRejected,
    RejectionReason,
    RememberedCards,
    SithsValidator,
    check_card_key,
    load_certificate,
)
from idp.web.messages import MESSAGES
from siths_testkit.login_driver import PemCard
from siths_testkit.pki import TestPki, issue_card_for_public_key
from siths_testkit.pki.cards import load_issuer
from tests.helpers.card_defects import (
    ACCEPTED,
    ANNA,
    MORE_PROFILE_DEFECTS,
    MORE_WEAK_KEYS,
    PROFILE_DEFECTS,
    WEAK_KEYS,
    Defect,
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


# --- remembered cards -------------------------------------------------------------------------


def _fresh_validator(test_pki: TestPki) -> SithsValidator:
    trust = load_siths_trust(test_pki.trust_anchors_file, test_pki.intermediates_file)
    return SithsValidator(trust, [GOTEBORGS_STAD_ORG_NUMBER])


def test_a_remembered_card_is_refused_once_its_path_is_no_longer_valid(
    test_pki: TestPki,
) -> None:
    validator = _fresh_validator(test_pki)
    certificate = card_certificate(test_pki, "anna")
    first = validator.validate(certificate)
    # The second login takes the remembered path (the very tuple the first one built) ...
    assert validator.validate(certificate).chain is first.chain
    # ... but never past the window in which every certificate on it is valid.
    for moment, reason in (
        (certificate.not_valid_after_utc + dt.timedelta(seconds=1), RejectionReason.EXPIRED),
        (certificate.not_valid_before_utc - dt.timedelta(seconds=1), RejectionReason.NOT_YET_VALID),
    ):
        with pytest.raises(CertificateRejected) as raised:
            validator.validate(certificate, now=moment)
        assert raised.value.reason is reason
    assert validator.validate(certificate).hsa_id.value == "SE2120001355-E0001"


def test_a_refusal_is_not_remembered(test_pki: TestPki) -> None:
    validator = _fresh_validator(test_pki)
    certificate = card_certificate(test_pki, "anna")
    early = certificate.not_valid_before_utc - dt.timedelta(days=1)
    with pytest.raises(CertificateRejected):
        validator.validate(certificate, now=early)
    assert validator.validate(certificate).hsa_id.value == "SE2120001355-E0001"


def test_the_least_recently_used_card_is_forgotten_first(
    test_pki: TestPki, validator: SithsValidator
) -> None:
    anna, bertil, cecilia = (
        validator.validate(card_certificate(test_pki, name))
        for name in ("anna", "bertil", "cecilia")
    )
    now = dt.datetime.now(dt.UTC)
    remembered = RememberedCards(capacity=2)
    remembered.remember(anna)
    remembered.remember(bertil)
    assert remembered.get(anna.certificate, now) is anna  # anna is now the most recent
    remembered.remember(cecilia)
    assert remembered.get(bertil.certificate, now) is None
    assert remembered.get(anna.certificate, now) is anna
    assert remembered.get(cecilia.certificate, now) is cecilia


def test_a_certificate_read_again_is_not_parsed_again_and_garbage_stays_unreadable(
    test_pki: TestPki,
) -> None:
    pem = test_pki.cards["anna"].cert.read_bytes()
    assert load_certificate(pem) is load_certificate(pem)
    garbage = b"-----BEGIN CERTIFICATE-----\nAAAB\n-----END CERTIFICATE-----\n"
    for _ in range(2):
        with pytest.raises(CertificateRejected) as raised:
            load_certificate(garbage)
        assert raised.value.reason is RejectionReason.UNREADABLE


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


# --- the card's key and certificate profile (issue 14, findings 2 and 3) ---------------------


@pytest.mark.parametrize(
    "defect",
    [*WEAK_KEYS, *MORE_WEAK_KEYS, *PROFILE_DEFECTS, *MORE_PROFILE_DEFECTS],
    ids=lambda defect: defect.name,
)
def test_card_with_a_weak_key_or_a_wrong_profile_is_refused(
    test_pki: TestPki, validator: SithsValidator, tmp_path: Path, defect: Defect
) -> None:
    card = defect.issue(test_pki, tmp_path)
    with pytest.raises(CertificateRejected) as raised:
        validator.validate(x509.load_pem_x509_certificate(card.cert.read_bytes()))
    assert raised.value.reason.value == defect.reason, raised.value


@pytest.mark.parametrize("card", ACCEPTED, ids=lambda card: card.name)
def test_keys_and_profiles_that_siths_issues_are_accepted(
    test_pki: TestPki, validator: SithsValidator, tmp_path: Path, card: Defect
) -> None:
    issued = card.issue(test_pki, tmp_path)
    validated = validator.validate(x509.load_pem_x509_certificate(issued.cert.read_bytes()))
    assert validated.hsa_id.value == ANNA


@pytest.mark.parametrize("defect", WEAK_KEYS, ids=lambda defect: defect.name)
def test_the_app_signature_check_never_uses_a_weak_key(
    test_pki: TestPki, tmp_path: Path, defect: Defect
) -> None:
    # A correct signature by the card's own key: only the key's strength is wrong.
    issued = defect.issue(test_pki, tmp_path)
    card = PemCard(issued.cert, issued.key)
    algorithm, signature = card.sign(b"order data")
    with pytest.raises(CertificateRejected) as raised:
        signature_is_valid(card.certificate(), algorithm, signature, b"order data")
    assert raised.value.reason is RejectionReason.WEAK_KEY


def test_key_types_other_than_rsa_and_ec_are_refused() -> None:
    with pytest.raises(CertificateRejected) as raised:
        check_card_key(ed25519.Ed25519PrivateKey.generate().public_key())
    assert raised.value.reason is RejectionReason.WEAK_KEY


def test_forged_card_with_a_weak_key_is_called_untrusted(
    test_pki: TestPki, validator: SithsValidator, tmp_path: Path
) -> None:
    # Who issued it is the first thing a user (and an integrator) needs to know.
    forged = issue_card_for_public_key(
        test_pki,
        WEAK_KEYS[0].make_key().public_key(),
        hsa_id=ANNA,
        given_name="Anna",
        surname="Andersson",
        issuer=load_issuer(test_pki.forged_hsa_ca_cert, test_pki.forged_hsa_ca_key),
    )
    with pytest.raises(CertificateRejected) as raised:
        validator.validate(forged)
    assert raised.value.reason is RejectionReason.UNTRUSTED


def test_every_rejection_reason_has_its_own_page() -> None:
    assert [reason for reason in RejectionReason if reason.value not in MESSAGES] == []

"""Property tests of the SITHS certificate validator over generated certificates.

Certificates are built here with ``cryptography`` under a throw-away root and issuing CA (the
shape of the SITHS hierarchy), varying what an attacker or a misissuing CA could vary: key type
and size, public exponent, curve, keyUsage, extendedKeyUsage, basicConstraints, names and the
serialNumber HSA-ID, validity edges and the signature hash. The properties:

- the validator returns a result or raises ``CertificateRejected`` — never anything else;
- a certificate that meets the SITHS authentication profile (the oracle below) is accepted and
  read correctly, at the very first and last second of its validity too;
- a certificate that breaks a rule is refused, and one with a single defect is refused for
  that defect's own reason;
- bytes that are not a certificate, or a good certificate with bytes flipped, are unreadable
  or refused — never a crash;
- a card the validator remembers is judged at any moment (the edges of its validity and of its
  issuers' included) exactly as a validator that never saw it judges it.

The oracle is written from the profile (issue 14, README "Card key and EKU policy"), not from
the implementation: RSA >= 2048 bits with e = 65537 or EC P-256/P-384/P-521; keyUsage with
digitalSignature; extendedKeyUsage present with clientAuth; not a CA.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from idp.siths.trust import SithsTrust
from idp.siths.validation import (
    CertificateRejected,
    RejectionReason,
    SithsValidator,
    ValidatedCertificate,
    load_certificate,
)
from siths_testkit.pki.issue import (
    Issuer,
    issuing_ca_certificate,
    key_usage,
    root_ca_certificate,
)
from siths_testkit.pki.names import MS_SMARTCARD_LOGIN, ca_name
from tests.adversarial.figures import FIGURES, examples

ACCEPTED_ORGANISATION = "2120001355"
OTHER_ORGANISATION = "5590000001"
# One moment for the whole module, whole seconds (certificates carry no fractions).
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
SECOND = dt.timedelta(seconds=1)
DAY = dt.timedelta(days=1)

# Key names: (kind, detail). The allowed ones are exactly the SITHS/current-guidance set.
ALLOWED_KEYS = ("rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384", "ec-p521")
WEAK_KEYS = (
    "rsa-1024",
    "rsa-1024-e3",
    "rsa-2047",
    "rsa-2048-e3",
    "ec-p192",
    "ec-p224",
    "ec-secp256k1",
    "ec-brainpool256",
    "ed25519",
)
EKU_CHOICES = (
    ExtendedKeyUsageOID.CLIENT_AUTH,
    ExtendedKeyUsageOID.SERVER_AUTH,
    ExtendedKeyUsageOID.EMAIL_PROTECTION,
    ExtendedKeyUsageOID.CODE_SIGNING,
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    MS_SMARTCARD_LOGIN,
)
KEY_USAGE_BITS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def _make_key(name: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | object:
    if name.startswith("rsa-"):
        parts = name.split("-")
        exponent = 3 if parts[-1] == "e3" else 65537
        return rsa.generate_private_key(public_exponent=exponent, key_size=int(parts[1]))
    curves = {
        "ec-p192": ec.SECP192R1(),
        "ec-p224": ec.SECP224R1(),
        "ec-p256": ec.SECP256R1(),
        "ec-p384": ec.SECP384R1(),
        "ec-p521": ec.SECP521R1(),
        "ec-secp256k1": ec.SECP256K1(),
        "ec-brainpool256": ec.BrainpoolP256R1(),
    }
    if name in curves:
        return ec.generate_private_key(curves[name])
    assert name == "ed25519"
    return ed25519.Ed25519PrivateKey.generate()


@dataclass(frozen=True)
class Hierarchy:
    issuer: Issuer
    rogue: Issuer
    # An issuing CA valid for a day either side of NOW only: cards it issues outlive it.
    short_lived: Issuer
    trust: SithsTrust
    validator: SithsValidator
    public_keys: dict[str, object]


@pytest.fixture(scope="module")
def hierarchy() -> Hierarchy:
    def ca_key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    long_ago, far_ahead = NOW - 3650 * DAY, NOW + 3650 * DAY
    root_key, issuing_key, rogue_key = ca_key(), ca_key(), ca_key()
    root = root_ca_certificate(
        root_key, ca_name("Adversarial Root CA TEST"), not_before=long_ago, not_after=far_ahead
    )
    issuing_name = ca_name("Adversarial Person HSA-id CA TEST")
    issuing = issuing_ca_certificate(
        issuing_key,
        issuing_name,
        Issuer(root, root_key),
        not_before=long_ago,
        not_after=far_ahead,
    )
    # Same name as the real issuing CA, self-signed by another key: a forger's CA.
    rogue = root_ca_certificate(rogue_key, issuing_name, not_before=long_ago, not_after=far_ahead)
    short_lived_key = ca_key()
    short_lived = issuing_ca_certificate(
        short_lived_key,
        ca_name("Adversarial Short-lived CA TEST"),
        Issuer(root, root_key),
        not_before=NOW - DAY,
        not_after=NOW + DAY,
    )
    trust = SithsTrust(anchors=(root,), intermediates=(issuing, short_lived))
    keys = {name: _make_key(name) for name in (*ALLOWED_KEYS, *WEAK_KEYS)}
    return Hierarchy(
        issuer=Issuer(issuing, issuing_key),
        rogue=Issuer(rogue, rogue_key),
        short_lived=Issuer(short_lived, short_lived_key),
        trust=trust,
        validator=SithsValidator(trust, [ACCEPTED_ORGANISATION]),
        public_keys={name: key.public_key() for name, key in keys.items()},  # type: ignore[attr-defined]
    )


@dataclass(frozen=True)
class CardSpec:
    """Everything a generated card varies. ``None`` for an extension means it is absent."""

    key: str
    serial_numbers: tuple[str, ...]
    given_name: str
    surname: str
    key_usage_bits: frozenset[str] | None
    key_usage_critical: bool
    ekus: tuple[x509.ObjectIdentifier, ...] | None
    basic_constraints: tuple[bool, int | None] | None
    san: bool
    not_before: dt.datetime
    not_after: dt.datetime
    signature_hash: str
    rogue_issuer: bool


GOOD_HSA_LOCAL = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    min_size=1,
    max_size=18,
)
GOOD_HSA_ID = GOOD_HSA_LOCAL.map(lambda local: f"SE{ACCEPTED_ORGANISATION}-{local}")
NAME_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
# Validity edges around NOW: the first and last second are inside, one second beyond is not.
START_INSIDE = st.sampled_from([NOW - 3650 * DAY, NOW - DAY, NOW - SECOND, NOW])
END_INSIDE = st.sampled_from([NOW, NOW + SECOND, NOW + DAY, NOW + 3650 * DAY])


def profile_cards() -> st.SearchStrategy[CardSpec]:
    """Cards that meet the SITHS authentication profile: each must be accepted."""
    return st.builds(
        CardSpec,
        key=st.sampled_from(ALLOWED_KEYS),
        serial_numbers=GOOD_HSA_ID.map(lambda value: (value,)),
        given_name=NAME_TEXT,
        surname=NAME_TEXT,
        key_usage_bits=st.just(frozenset({"digital_signature"})),
        key_usage_critical=st.just(True),
        ekus=st.sampled_from(
            [
                (ExtendedKeyUsageOID.CLIENT_AUTH,),
                (ExtendedKeyUsageOID.CLIENT_AUTH, MS_SMARTCARD_LOGIN),
            ]
        ),
        basic_constraints=st.sampled_from([None, (False, None)]),
        san=st.just(True),
        not_before=START_INSIDE,
        not_after=END_INSIDE,
        signature_hash=st.sampled_from(["sha256", "sha384", "sha512"]),
        rogue_issuer=st.just(False),
    )


def any_cards() -> st.SearchStrategy[CardSpec]:
    """Anything a CA (or a forger) could sign."""
    serial = st.one_of(
        GOOD_HSA_ID,
        st.just(f"SE{OTHER_ORGANISATION}-X0001"),
        # serialNumber is a PrintableString: anything in its alphabet.
        st.text(
            alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?",
            min_size=1,
            max_size=40,
        ),
    )
    return st.builds(
        CardSpec,
        key=st.sampled_from((*ALLOWED_KEYS, *WEAK_KEYS)),
        serial_numbers=st.lists(serial, min_size=0, max_size=2).map(tuple),
        given_name=NAME_TEXT,
        surname=NAME_TEXT,
        key_usage_bits=st.none() | st.frozensets(st.sampled_from(KEY_USAGE_BITS)),
        key_usage_critical=st.booleans(),
        ekus=st.none() | st.lists(st.sampled_from(EKU_CHOICES), unique=True).map(tuple),
        basic_constraints=st.none()
        | st.tuples(st.booleans(), st.none() | st.integers(min_value=0, max_value=2)),
        san=st.booleans(),
        not_before=st.sampled_from([NOW - 3650 * DAY, NOW - SECOND, NOW, NOW + SECOND]),
        not_after=st.sampled_from([NOW - SECOND, NOW, NOW + SECOND, NOW + 3650 * DAY]),
        # (cryptography no longer signs with SHA-1, so a SHA-1 card cannot be made here.)
        signature_hash=st.sampled_from(["sha256", "sha384", "sha512"]),
        rogue_issuer=st.booleans(),
    ).filter(lambda spec: spec.not_before <= spec.not_after)


def _hash(name: str) -> hashes.HashAlgorithm:
    return {
        "sha256": hashes.SHA256(),
        "sha384": hashes.SHA384(),
        "sha512": hashes.SHA512(),
    }[name]


def build_card(
    spec: CardSpec, hierarchy: Hierarchy, issuer: Issuer | None = None
) -> x509.Certificate:
    """The card ``spec`` describes, issued by ``issuer`` (default: the one ``spec`` names)."""
    issuer = issuer or (hierarchy.rogue if spec.rogue_issuer else hierarchy.issuer)
    public_key = hierarchy.public_keys[spec.key]
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Göteborgs Stad"),
        x509.NameAttribute(NameOID.GIVEN_NAME, spec.given_name),
        x509.NameAttribute(NameOID.SURNAME, spec.surname),
        # The validator does not read the CN; a fixed one keeps within its 64-byte limit.
        x509.NameAttribute(NameOID.COMMON_NAME, "Kortinnehavare"),
        *(x509.NameAttribute(NameOID.SERIAL_NUMBER, value) for value in spec.serial_numbers),
    ]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if spec.basic_constraints is not None:
        is_ca, path_length = spec.basic_constraints
        builder = builder.add_extension(
            x509.BasicConstraints(ca=is_ca, path_length=path_length if is_ca else None),
            critical=True,
        )
    if spec.key_usage_bits is not None:
        usage = key_usage(
            digital_signature="digital_signature" in spec.key_usage_bits,
            key_encipherment="key_encipherment" in spec.key_usage_bits,
            key_cert_sign="key_cert_sign" in spec.key_usage_bits,
            crl_sign="crl_sign" in spec.key_usage_bits,
        )
        usage = x509.KeyUsage(
            digital_signature=usage.digital_signature,
            content_commitment="content_commitment" in spec.key_usage_bits,
            key_encipherment=usage.key_encipherment,
            data_encipherment="data_encipherment" in spec.key_usage_bits,
            key_agreement="key_agreement" in spec.key_usage_bits,
            key_cert_sign=usage.key_cert_sign,
            crl_sign=usage.crl_sign,
            encipher_only=False,
            decipher_only=False,
        )
        builder = builder.add_extension(usage, critical=spec.key_usage_critical)
    if spec.ekus is not None and spec.ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(spec.ekus)), critical=False)
    if spec.san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name("someone@example.invalid")]),
            critical=False,
        )
    return builder.sign(issuer.key, _hash(spec.signature_hash))


def meets_profile(spec: CardSpec) -> bool:
    """The oracle: what the SITHS authentication profile allows (see the module docstring)."""
    return (
        spec.key in ALLOWED_KEYS
        and not spec.rogue_issuer
        and len(spec.serial_numbers) == 1
        and _is_accepted_hsa_id(spec.serial_numbers[0])
        and spec.key_usage_bits is not None
        and "digital_signature" in spec.key_usage_bits
        and bool(spec.ekus)
        and ExtendedKeyUsageOID.CLIENT_AUTH in (spec.ekus or ())
        and (spec.basic_constraints is None or not spec.basic_constraints[0])
        and spec.not_before <= NOW <= spec.not_after
    )


def must_be_refused(spec: CardSpec) -> str | None:
    """The rule a certificate breaks that no implementation may let through, if any."""
    if spec.key not in ALLOWED_KEYS:
        return f"weak or unapproved key {spec.key}"
    if not spec.ekus or ExtendedKeyUsageOID.CLIENT_AUTH not in spec.ekus:
        return "no extendedKeyUsage clientAuth"
    if spec.key_usage_bits is None or "digital_signature" not in spec.key_usage_bits:
        return "no keyUsage digitalSignature"
    if spec.basic_constraints is not None and spec.basic_constraints[0]:
        return "a CA certificate"
    if spec.rogue_issuer:
        return "not issued by the SITHS CA"
    if not (spec.not_before <= NOW <= spec.not_after):
        return "outside its validity"
    if len(spec.serial_numbers) != 1 or not _is_accepted_hsa_id(spec.serial_numbers[0]):
        return "no single HSA-ID of an accepted organisation"
    return None


def _is_accepted_hsa_id(value: str) -> bool:
    prefix = f"SE{ACCEPTED_ORGANISATION}-"
    local = value.removeprefix(prefix)
    return (
        value.startswith(prefix)
        and len(local) > 0
        and len(value) <= 31
        and local.isascii()
        and local.isalnum()
    )


def describe(spec: CardSpec) -> str:
    """The spec in a line a reader can act on (the failing example of a finding)."""
    ekus = None if spec.ekus is None else [oid.dotted_string for oid in spec.ekus]
    usage = None if spec.key_usage_bits is None else sorted(spec.key_usage_bits)
    return (
        f"key={spec.key} serialNumber={spec.serial_numbers} keyUsage={usage} eku={ekus} "
        f"basicConstraints={spec.basic_constraints} san={spec.san} "
        f"validity={spec.not_before - NOW}..{spec.not_after - NOW} hash={spec.signature_hash} "
        f"rogue_issuer={spec.rogue_issuer}"
    )


def expect_rejected(hierarchy: Hierarchy, spec: CardSpec) -> CertificateRejected:
    try:
        validated = validate(hierarchy, build_card(spec, hierarchy))
    except CertificateRejected as rejected:
        return rejected
    pytest.fail(f"accepted ({validated.hsa_id.value}): {describe(spec)}")


def validate(hierarchy: Hierarchy, certificate: x509.Certificate) -> ValidatedCertificate:
    """The call under test: only a result or ``CertificateRejected`` may come out."""
    FIGURES.tried("certificate validator")
    return hierarchy.validator.validate(certificate, now=NOW)


@settings(max_examples=examples(40))
@given(spec=profile_cards())
def test_a_card_that_meets_the_profile_is_accepted(hierarchy: Hierarchy, spec: CardSpec) -> None:
    validated = validate(hierarchy, build_card(spec, hierarchy))
    assert validated.hsa_id.value == spec.serial_numbers[0]
    assert (validated.given_name, validated.surname) == (spec.given_name, spec.surname)


@settings(max_examples=examples(120))
@given(spec=any_cards())
def test_any_card_is_accepted_only_if_it_meets_the_profile(
    hierarchy: Hierarchy, spec: CardSpec
) -> None:
    certificate = build_card(spec, hierarchy)
    broken_rule = must_be_refused(spec)
    try:
        validated = validate(hierarchy, certificate)
    except CertificateRejected as rejected:
        assert isinstance(rejected.reason, RejectionReason), rejected
        assert not meets_profile(spec) or spec.san is False, (
            f"a profile card was refused: {rejected}: {describe(spec)}"
        )
        return
    assert broken_rule is None, f"accepted although {broken_rule}: {describe(spec)}"
    assert validated.hsa_id.value == spec.serial_numbers[0]


# One defect applied to a profile card, and the reason the user must be shown for it. A weak
# key has a reason of its own (whatever its code), which must not be one of the others.
Defect = Callable[[CardSpec], CardSpec]
DEFECTS: dict[str, tuple[Defect, RejectionReason | None]] = {
    "expired": (
        lambda s: replace(s, not_before=NOW - DAY, not_after=NOW - SECOND),
        RejectionReason.EXPIRED,
    ),
    "not yet valid": (
        lambda s: replace(s, not_before=NOW + SECOND, not_after=NOW + DAY),
        RejectionReason.NOT_YET_VALID,
    ),
    "no EKU": (lambda s: replace(s, ekus=None), RejectionReason.WRONG_EXTENDED_KEY_USAGE),
    "EKU without clientAuth": (
        lambda s: replace(s, ekus=(ExtendedKeyUsageOID.SERVER_AUTH, MS_SMARTCARD_LOGIN)),
        RejectionReason.WRONG_EXTENDED_KEY_USAGE,
    ),
    "no keyUsage": (lambda s: replace(s, key_usage_bits=None), RejectionReason.WRONG_KEY_USAGE),
    "keyUsage without digitalSignature": (
        lambda s: replace(s, key_usage_bits=frozenset({"key_encipherment"})),
        RejectionReason.WRONG_KEY_USAGE,
    ),
    "no HSA-ID": (lambda s: replace(s, serial_numbers=()), RejectionReason.NO_HSA_ID),
    "two HSA-IDs": (
        lambda s: replace(s, serial_numbers=(*s.serial_numbers, f"SE{ACCEPTED_ORGANISATION}-Z9")),
        RejectionReason.MALFORMED_HSA_ID,
    ),
    "malformed HSA-ID": (
        lambda s: replace(s, serial_numbers=(s.serial_numbers[0].replace("-", "", 1),)),
        RejectionReason.MALFORMED_HSA_ID,
    ),
    "other organisation": (
        lambda s: replace(s, serial_numbers=(f"SE{OTHER_ORGANISATION}-X0001",)),
        RejectionReason.ORGANISATION_NOT_ACCEPTED,
    ),
    "forged issuer": (lambda s: replace(s, rogue_issuer=True), RejectionReason.UNTRUSTED),
}
KEY_DEFECT_REASONS_NOT_ALLOWED = {
    RejectionReason.EXPIRED,
    RejectionReason.NOT_YET_VALID,
    RejectionReason.NO_HSA_ID,
    RejectionReason.MALFORMED_HSA_ID,
    RejectionReason.ORGANISATION_NOT_ACCEPTED,
}


@settings(max_examples=examples(40))
@given(spec=profile_cards(), defect=st.sampled_from(sorted(DEFECTS)))
def test_a_single_defect_is_refused_for_its_own_reason(
    hierarchy: Hierarchy, spec: CardSpec, defect: str
) -> None:
    apply, reason = DEFECTS[defect]
    rejected = expect_rejected(hierarchy, apply(spec))
    assert rejected.reason is reason, f"{defect}: {rejected}: {describe(apply(spec))}"


@settings(max_examples=examples(30))
@given(spec=profile_cards(), key=st.sampled_from(WEAK_KEYS))
def test_a_weak_key_is_refused_with_a_reason_about_the_key(
    hierarchy: Hierarchy, spec: CardSpec, key: str
) -> None:
    rejected = expect_rejected(hierarchy, replace(spec, key=key))
    assert rejected.reason not in KEY_DEFECT_REASONS_NOT_ALLOWED, rejected


@settings(max_examples=examples(15))
@given(spec=profile_cards(), path_length=st.none() | st.integers(min_value=0, max_value=3))
def test_a_ca_certificate_is_never_a_card(
    hierarchy: Hierarchy, spec: CardSpec, path_length: int | None
) -> None:
    ca_like = replace(
        spec,
        basic_constraints=(True, path_length),
        key_usage_bits=frozenset({"digital_signature", "key_cert_sign", "crl_sign"}),
    )
    expect_rejected(hierarchy, ca_like)


@settings(max_examples=examples(60))
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_are_unreadable_or_refused(hierarchy: Hierarchy, data: bytes) -> None:
    try:
        certificate = load_certificate(data)
    except CertificateRejected as rejected:
        assert rejected.reason is RejectionReason.UNREADABLE
        FIGURES.tried("certificate validator")
        return
    with pytest.raises(CertificateRejected):
        validate(hierarchy, certificate)


@settings(max_examples=examples(80))
@given(
    spec=profile_cards(),
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
        min_size=1,
        max_size=4,
    ),
)
def test_a_good_card_with_flipped_bytes_is_never_a_crash(
    hierarchy: Hierarchy, spec: CardSpec, flips: list[tuple[int, int]]
) -> None:
    original = build_card(spec, hierarchy)
    der = bytearray(original.public_bytes(Encoding.DER))
    for position, mask in flips:
        der[position % len(der)] ^= mask
    try:
        certificate = load_certificate(bytes(der))
    except CertificateRejected as rejected:
        assert rejected.reason is RejectionReason.UNREADABLE
        FIGURES.tried("certificate validator")
        return
    try:
        validate(hierarchy, certificate)
    except CertificateRejected:
        return
    # Accepted: only if what the CA signed, and its signature, came through untouched.
    assert certificate.tbs_certificate_bytes == original.tbs_certificate_bytes
    assert certificate.signature == original.signature


def _judgement(validator: SithsValidator, card: x509.Certificate, moment: dt.datetime) -> str:
    try:
        validated = validator.validate(card, now=moment)
    except CertificateRejected as rejected:
        return f"refused: {rejected.reason}"
    return f"accepted: {validated.hsa_id.value}, {validated.given_name} {validated.surname}"


# Moments around the validity of a card and of its issuing CA: the edges, a second beyond
# them, and far either side.
EDGES = ("card not_before", "card not_after", "issuer not_before", "issuer not_after")
OFFSETS = (-SECOND, dt.timedelta(0), SECOND, -3650 * DAY, 3650 * DAY)


@settings(max_examples=examples(30))
@given(spec=profile_cards(), short_lived_issuer=st.booleans())
def test_a_remembered_card_is_judged_as_a_fresh_validator_judges_it(
    hierarchy: Hierarchy, spec: CardSpec, short_lived_issuer: bool
) -> None:
    """Remembering a card that passed never changes a judgement: once it has been
    accepted, at any moment (a second before or after the card's or its issuer's validity, the edges
    themselves, far either side) the remembering validator says what a validator that never
    saw the card says."""
    issuer = hierarchy.short_lived if short_lived_issuer else hierarchy.issuer
    card = build_card(spec, hierarchy, issuer)
    edges = {
        "card not_before": card.not_valid_before_utc,
        "card not_after": card.not_valid_after_utc,
        "issuer not_before": issuer.certificate.not_valid_before_utc,
        "issuer not_after": issuer.certificate.not_valid_after_utc,
    }
    remembering = SithsValidator(hierarchy.trust, [ACCEPTED_ORGANISATION])
    for edge, offset in itertools.product(EDGES, OFFSETS):
        moment = edges[edge] + offset
        # Remembered at NOW (again: a judgement outside the window forgets the card) ...
        assert _judgement(remembering, card, NOW).startswith("accepted"), describe(spec)
        # ... and judged at the moment as by a validator that has never accepted it.
        fresh = SithsValidator(hierarchy.trust, [ACCEPTED_ORGANISATION])
        FIGURES.tried("certificate validator", 2)
        assert _judgement(remembering, card, moment) == _judgement(fresh, card, moment), (
            f"at {edge} {offset}: {describe(spec)}, issued by {issuer.certificate.subject}"
        )

"""The test PKI: layout, certificate profiles, the defect of each bad card, issue_card, CLI.

One PKI is generated per module (about a second); the tests only read it, except the ones
that issue new cards into their own directories.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import stat
from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    pkcs12,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from idp.hsa_id import parse_hsa_id
from siths_testkit.pki import CardFiles, TestPki, init_test_pki, issue_card, load_test_pki
from siths_testkit.pki.cli import card_group, pki_group
from siths_testkit.pki.issue import CardProfile
from siths_testkit.pki.layout import FILES

GOOD_CARDS = {
    "anna": ("SE2120001355-E0001", "Anna", "Andersson"),
    "bertil": ("SE2120001355-E0002", "Bertil", "Berg"),
    "cecilia": ("SE2120001355-E0003", "Cecilia", "Carlsson"),
    "doris": ("SE2120001355-E0004", "Doris", "Dahl"),
    "erik": ("SE2120001355-E0005", "Erik", "Ek"),
    "erik_private": ("SE5567000010-P0001", "Erik", "Ek"),
}
BAD_CARDS = (
    "expired",
    "not_yet_valid",
    "wrong_eku",
    "wrong_key_usage",
    "no_hsa_id",
    "malformed_hsa_id",
    "other_org",
    "forged",
)
MS_SMARTCARD_LOGIN = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.2")


@pytest.fixture(scope="module")
def progress_lines() -> list[str]:
    return []


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory, progress_lines: list[str]) -> TestPki:
    return init_test_pki(tmp_path_factory.mktemp("pki"), progress=progress_lines.append)


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def key(path: Path) -> RSAPrivateKey | ec.EllipticCurvePrivateKey:
    # Skipping the (slow) RSA consistency check is fine: every test compares the key with its
    # certificate's public key, which is the property that matters here.
    loaded = load_pem_private_key(
        path.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True
    )
    assert isinstance(loaded, RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return loaded


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def extension(certificate: x509.Certificate, kind: type) -> x509.Extension:
    return certificate.extensions.get_extension_for_class(kind)


def subject_value(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(attr.value) for attr in certificate.subject.get_attributes_for_oid(oid)]


def _require_digital_signature(_policy: object, _cert: object, usage: x509.KeyUsage | None):
    if usage is None or not usage.digital_signature:
        raise ValueError("keyUsage digitalSignature required")


def client_verifier(
    root: Path, *, at: dt.datetime | None = None, require_digital_signature: bool = False
):
    """The verifier the brief names: Web PKI defaults, one trust anchor, a client certificate."""
    builder = PolicyBuilder().store(Store([cert(root)])).time(at or now())
    if require_digital_signature:
        builder = builder.extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=ExtensionPolicy.webpki_defaults_ee().require_present(
                x509.KeyUsage, Criticality.AGNOSTIC, _require_digital_signature
            ),
        )
    return builder.build_client_verifier()


def verify_card(pki: TestPki, card: CardFiles, **kwargs):
    return client_verifier(pki.root_ca_cert, **kwargs).verify(
        cert(card.cert), [cert(pki.hsa_ca_cert)]
    )


# Layout and manifest ---------------------------------------------------------------------


def test_layout_is_the_documented_one(pki: TestPki) -> None:
    expected = {
        "root_ca_cert": "siths/root-ca.crt.pem",
        "hsa_ca_cert": "siths/hsa-id-ca.crt.pem",
        "person_id_ca_cert": "siths/person-id-ca.crt.pem",
        "trust_anchors_file": "siths/trust-anchors.pem",
        "intermediates_file": "siths/intermediates.pem",
        "tls_ca_cert": "tls/ca.crt.pem",
        "tls_server_cert": "tls/server.crt.pem",
        "tls_server_key": "tls/server.key.pem",
        "idp_signing_cert": "idp/saml-signing.crt.pem",
        "idp_signing_key": "idp/saml-signing.key.pem",
        "idp_next_signing_cert": "idp/saml-signing-next.crt.pem",
        "idp_next_signing_key": "idp/saml-signing-next.key.pem",
        "sp_signing_cert": "sp/treserva.crt.pem",
        "sp_signing_key": "sp/treserva.key.pem",
    }
    for field, relative in expected.items():
        assert getattr(pki, field) == pki.directory / relative
    for field in FILES:
        assert getattr(pki, field).is_file(), field
    assert set(FILES) == {f.name for f in fields(TestPki)} - {"directory", "cards"}
    assert (pki.directory / "siths" / "root-ca.key.pem").is_file()
    assert (pki.directory / "forged" / "root-ca.crt.pem").is_file()
    assert (pki.directory / "forged" / "hsa-id-ca.crt.pem").is_file()


def test_card_files_are_where_the_layout_says(pki: TestPki) -> None:
    assert set(pki.cards) == set(GOOD_CARDS) | set(BAD_CARDS)
    for name, card in pki.cards.items():
        assert card.name == name
        stem = card.hsa_id if card.kind == "good" else f"bad/{name}"
        assert card.cert == pki.directory / "cards" / f"{stem}.crt.pem"
        assert card.key == pki.directory / "cards" / f"{stem}.key.pem"
        assert card.p12 == pki.directory / "cards" / f"{stem}.p12"
        for path in (card.cert, card.key, card.p12):
            assert path.is_file()


def test_manifest_round_trips_with_relative_paths(pki: TestPki) -> None:
    manifest = json.loads((pki.directory / "manifest.json").read_text("utf-8"))
    assert manifest["files"]["trust_anchors_file"] == "siths/trust-anchors.pem"
    assert manifest["cards"]["anna"]["cert"] == "cards/SE2120001355-E0001.crt.pem"
    assert load_test_pki(pki.directory) == pki


def test_init_is_idempotent(pki: TestPki) -> None:
    before = {path: path.read_bytes() for path in pki.directory.rglob("*") if path.is_file()}
    lines: list[str] = []
    again = init_test_pki(pki.directory, progress=lines.append)
    assert again == pki
    assert lines == [
        f"Test PKI already exists in {pki.directory} (manifest.json); nothing regenerated"
    ]
    after = {path: path.read_bytes() for path in pki.directory.rglob("*") if path.is_file()}
    assert after == before


def test_init_reports_each_step(progress_lines: list[str]) -> None:
    text = "\n".join(progress_lines)
    for fragment in (
        "SITHS root CA",
        "HSA-id 3 CA",
        "Person ID 3 CA",
        "Forged",
        "TLS server",
        "SAML signing",
        "Treserva",
        "Card anna",
        "Card forged",
        "Manifest",
    ):
        assert fragment in text


def test_load_without_manifest_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="idp pki init"):
        load_test_pki(tmp_path)


def test_private_keys_are_readable_by_owner_only(pki: TestPki) -> None:
    secrets = [getattr(pki, name) for name in FILES if name.endswith("_key")]
    secrets += [path for card in pki.cards.values() for path in (card.key, card.p12)]
    assert len(secrets) > 20
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in secrets[:1]:
        assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # plain PKCS#8


def test_every_key_matches_its_certificate(pki: TestPki) -> None:
    pairs = [
        (getattr(pki, name), getattr(pki, name.removesuffix("_key") + "_cert"))
        for name in FILES
        if name.endswith("_key")
    ]
    pairs += [(card.key, card.cert) for card in pki.cards.values()]
    publics = set()
    for key_path, cert_path in pairs:
        private = key(key_path)
        if key_path == pki.tls_server_key:
            # The TLS server's key is EC P-256 (two handshakes per login); all others RSA.
            assert isinstance(private, ec.EllipticCurvePrivateKey), key_path
            assert private.curve.name == "secp256r1"
        else:
            assert isinstance(private, rsa.RSAPrivateKey), key_path
            assert private.key_size == 2048
        assert private.public_key() == cert(cert_path).public_key(), key_path
        publics.add(
            private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        )
    assert len(publics) == len(pairs), "every certificate has its own key"
    assert len(pairs) < 30


# The SITHS hierarchy ----------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Inera AB"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _years(certificate: x509.Certificate) -> float:
    span = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    return span.days / 365.25


def test_root_ca_profile(pki: TestPki) -> None:
    root = cert(pki.root_ca_cert)
    assert root.subject == root.issuer == _name("SITHS e-id Root CA v2 TEST")
    constraints = extension(root, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = extension(root, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    assert extension(root, x509.SubjectKeyIdentifier).value.digest
    assert round(_years(root)) == 20
    root.verify_directly_issued_by(root)


@pytest.mark.parametrize(
    ("field", "common_name"),
    [
        ("hsa_ca_cert", "SITHS e-id Person HSA-id 3 CA v1 TEST"),
        ("person_id_ca_cert", "SITHS e-id Person ID 3 CA v1 TEST"),
    ],
)
def test_issuing_ca_profile(pki: TestPki, field: str, common_name: str) -> None:
    root, ca = cert(pki.root_ca_cert), cert(getattr(pki, field))
    assert ca.subject == _name(common_name)
    assert ca.issuer == root.subject
    constraints = extension(ca, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = extension(ca, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert (
        extension(ca, x509.AuthorityKeyIdentifier).value.key_identifier
        == extension(root, x509.SubjectKeyIdentifier).value.digest
    )
    assert round(_years(ca)) == 10
    ca.verify_directly_issued_by(root)


def test_trust_bundles(pki: TestPki) -> None:
    anchors = x509.load_pem_x509_certificates(pki.trust_anchors_file.read_bytes())
    assert anchors == [cert(pki.root_ca_cert)]
    intermediates = x509.load_pem_x509_certificates(pki.intermediates_file.read_bytes())
    assert intermediates == [cert(pki.hsa_ca_cert), cert(pki.person_id_ca_cert)]


# Good cards -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD_CARDS)
def test_good_card_verifies_with_the_client_verifier(pki: TestPki, name: str) -> None:
    card = pki.cards[name]
    verified = verify_card(pki, card)
    assert verified.chain == [cert(card.cert), cert(pki.hsa_ca_cert), cert(pki.root_ca_cert)]
    # Also with keyUsage digitalSignature required, as the IdP requires it.
    verify_card(pki, card, require_digital_signature=True)
    # And with all issuing CAs offered, as the IdP does (intermediates.pem).
    client_verifier(pki.root_ca_cert).verify(
        cert(card.cert), x509.load_pem_x509_certificates(pki.intermediates_file.read_bytes())
    )


@pytest.mark.parametrize("name", GOOD_CARDS)
def test_good_card_profile(pki: TestPki, name: str) -> None:
    hsa_id, given, surname = GOOD_CARDS[name]
    card = pki.cards[name]
    assert (card.kind, card.hsa_id, card.given_name, card.surname) == (
        "good",
        hsa_id,
        given,
        surname,
    )
    leaf = cert(card.cert)
    organisation = "Omsorgsbolaget Väst AB" if name == "erik_private" else "Göteborgs Stad"
    assert leaf.subject == x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.GIVEN_NAME, given),
            x509.NameAttribute(NameOID.SURNAME, surname),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{given} {surname}"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, hsa_id),
        ]
    )
    assert leaf.issuer == _name("SITHS e-id Person HSA-id 3 CA v1 TEST")
    usage = extension(leaf, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_encipherment
    eku = extension(leaf, x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH, MS_SMARTCARD_LOGIN]
    san = extension(leaf, x509.SubjectAlternativeName)
    assert not san.critical
    expected_email = f"{given}.{surname}@example.invalid".lower()
    assert san.value.get_values_for_type(x509.RFC822Name) == [expected_email]
    assert extension(leaf, x509.SubjectKeyIdentifier)
    assert 0 < leaf.serial_number < 2**128
    assert abs(leaf.not_valid_before_utc - (now() - dt.timedelta(hours=1))) < dt.timedelta(
        minutes=10
    )
    assert 729 <= (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days <= 731


def test_two_organisations_on_one_card(pki: TestPki) -> None:
    erik, private = pki.cards["erik"], pki.cards["erik_private"]
    assert erik.extra_certs == ["erik_private"]
    assert private.extra_certs == ["erik"]
    assert parse_hsa_id(private.hsa_id or "").organisation_number == "5567000010"
    assert cert(erik.cert).public_key() != cert(private.cert).public_key()


def test_email_is_ascii_folded(pki: TestPki) -> None:
    expired = cert(pki.cards["expired"].cert)  # Eva Utgången
    san = extension(expired, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["eva.utgangen@example.invalid"]


# Bad cards: each has its defect, and only that one ---------------------------------------


def test_bad_cards_are_in_the_bad_directory(pki: TestPki) -> None:
    for name in BAD_CARDS:
        card = pki.cards[name]
        assert card.kind == name
        assert card.cert.parent == pki.directory / "cards" / "bad"


def test_expired_card(pki: TestPki) -> None:
    card = pki.cards["expired"]
    leaf = cert(card.cert)
    assert leaf.not_valid_after_utc < now()
    with pytest.raises(VerificationError):
        verify_card(pki, card)
    verify_card(pki, card, at=leaf.not_valid_after_utc - dt.timedelta(hours=1))


def test_not_yet_valid_card(pki: TestPki) -> None:
    card = pki.cards["not_yet_valid"]
    leaf = cert(card.cert)
    assert leaf.not_valid_before_utc > now() + dt.timedelta(days=300)
    with pytest.raises(VerificationError):
        verify_card(pki, card)
    verify_card(pki, card, at=leaf.not_valid_before_utc + dt.timedelta(days=1))


def test_wrong_eku_card(pki: TestPki) -> None:
    card = pki.cards["wrong_eku"]
    assert list(extension(cert(card.cert), x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    with pytest.raises(VerificationError, match="EKU"):
        verify_card(pki, card)


def test_wrong_key_usage_card(pki: TestPki) -> None:
    card = pki.cards["wrong_key_usage"]
    leaf = cert(card.cert)
    usage = extension(leaf, x509.KeyUsage).value
    assert usage.key_encipherment and not usage.digital_signature
    assert ExtendedKeyUsageOID.CLIENT_AUTH in extension(leaf, x509.ExtendedKeyUsage).value
    # The Web PKI defaults do not look at digitalSignature on a client certificate: the IdP
    # must ask for it, and then this card fails.
    verify_card(pki, card)
    with pytest.raises(VerificationError, match="digitalSignature"):
        verify_card(pki, card, require_digital_signature=True)


def test_no_hsa_id_card(pki: TestPki) -> None:
    card = pki.cards["no_hsa_id"]
    assert card.hsa_id is None
    assert subject_value(cert(card.cert), NameOID.SERIAL_NUMBER) == []
    verify_card(pki, card, require_digital_signature=True)


def test_malformed_hsa_id_card(pki: TestPki) -> None:
    card = pki.cards["malformed_hsa_id"]
    assert card.hsa_id == "SE2120001355E0905"
    assert subject_value(cert(card.cert), NameOID.SERIAL_NUMBER) == ["SE2120001355E0905"]
    with pytest.raises(ValueError, match="form"):
        parse_hsa_id(card.hsa_id)
    verify_card(pki, card, require_digital_signature=True)


def test_other_org_card(pki: TestPki) -> None:
    card = pki.cards["other_org"]
    leaf = cert(card.cert)
    assert card.hsa_id == "SE5590000001-X0001"
    assert subject_value(leaf, NameOID.ORGANIZATION_NAME) == ["Annan Region AB"]
    verify_card(pki, card, require_digital_signature=True)


def test_forged_card_looks_like_annas_but_does_not_verify(pki: TestPki) -> None:
    forged, anna = cert(pki.cards["forged"].cert), cert(pki.cards["anna"].cert)
    real_ca, forged_ca = cert(pki.hsa_ca_cert), cert(pki.forged_hsa_ca_cert)
    assert pki.cards["forged"].hsa_id == "SE2120001355-E0001"
    assert forged.subject == anna.subject
    assert forged.issuer == anna.issuer == real_ca.subject == forged_ca.subject
    assert cert(pki.forged_root_ca_cert).subject == cert(pki.root_ca_cert).subject
    # Even the key identifiers match: only a signature check can tell.
    assert (
        extension(forged, x509.AuthorityKeyIdentifier).value
        == extension(anna, x509.AuthorityKeyIdentifier).value
    )
    assert forged_ca.public_key() != real_ca.public_key()
    with pytest.raises(VerificationError):
        verify_card(pki, pki.cards["forged"])
    with pytest.raises(VerificationError):
        # Offering the forged CA as intermediate does not help either.
        client_verifier(pki.root_ca_cert).verify(forged, [forged_ca, real_ca])
    # Against its own (forged) root it is a perfectly good card.
    client_verifier(pki.forged_root_ca_cert).verify(forged, [forged_ca])


# TLS and SAML keys ------------------------------------------------------------------------


def test_tls_server_certificate(pki: TestPki) -> None:
    server, ca = cert(pki.tls_server_cert), cert(pki.tls_ca_cert)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "Åtkomsttjänsten Test TLS CA"
    )
    san = extension(server, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert list(extension(server, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    for host in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("::1"))):
        PolicyBuilder().store(Store([ca])).time(now()).build_server_verifier(host).verify(
            server, []
        )


def test_tls_handshake_with_python_ssl(pki: TestPki) -> None:
    """The strictest client at hand (OpenSSL with X509_STRICT) accepts the server."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(pki.tls_server_cert, pki.tls_server_key)
    client_context = ssl.create_default_context(cafile=str(pki.tls_ca_cert))
    client_context.verify_flags |= ssl.VERIFY_X509_STRICT
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for side, obj in (("client", client), ("server", server)):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    assert all(done.values())


@pytest.mark.parametrize(
    ("field", "common_name"),
    [
        ("idp_signing_cert", "Göteborgs Stads Åtkomsttjänst SAML signing (TEST)"),
        ("idp_next_signing_cert", None),
        ("sp_signing_cert", None),
    ],
)
def test_saml_keys_are_self_signed(pki: TestPki, field: str, common_name: str | None) -> None:
    certificate = cert(getattr(pki, field))
    assert certificate.subject == certificate.issuer
    certificate.verify_directly_issued_by(certificate)
    assert round(_years(certificate)) == 3
    if common_name is not None:
        assert subject_value(certificate, NameOID.COMMON_NAME) == [common_name]


def test_next_signing_key_differs(pki: TestPki) -> None:
    assert cert(pki.idp_signing_cert).public_key() != cert(pki.idp_next_signing_cert).public_key()


# issue_card -------------------------------------------------------------------------------


def test_issue_card_round_trip(pki: TestPki, tmp_path: Path) -> None:
    card = issue_card(
        pki,
        hsa_id="SE2120001355-E0042",
        given_name="Åsa",
        surname="Öberg",
        out_dir=tmp_path / "out",
        p12_password=b"s3cret",
    )
    assert (card.name, card.hsa_id, card.kind, card.extra_certs) == (
        "SE2120001355-E0042",
        "SE2120001355-E0042",
        "good",
        [],
    )
    assert card.cert == tmp_path / "out" / "SE2120001355-E0042.crt.pem"
    assert card.key == tmp_path / "out" / "SE2120001355-E0042.key.pem"
    assert card.p12 == tmp_path / "out" / "SE2120001355-E0042.p12"
    leaf = cert(card.cert)
    assert key(card.key).public_key() == leaf.public_key()
    assert stat.S_IMODE(card.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(card.p12.stat().st_mode) == 0o600
    bundle = pkcs12.load_pkcs12(card.p12.read_bytes(), b"s3cret")
    assert bundle.cert is not None and bundle.cert.certificate == leaf
    assert bundle.key is not None and bundle.key.public_key() == leaf.public_key()
    assert [c.certificate for c in bundle.additional_certs] == [cert(pki.hsa_ca_cert)]
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(card.p12.read_bytes(), b"1234")
    assert subject_value(leaf, NameOID.ORGANIZATION_NAME) == ["Göteborgs Stad"]
    assert extension(leaf, x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name
    ) == ["asa.oberg@example.invalid"]
    verify_card(pki, card, require_digital_signature=True)


def test_issue_card_organisation_and_validity(pki: TestPki, tmp_path: Path) -> None:
    not_after = now().replace(microsecond=0) + dt.timedelta(days=30)
    unknown = issue_card(
        pki,
        hsa_id="SE1234567890-Z9",
        given_name="Per",
        surname="Persson",
        out_dir=tmp_path,
        not_after=not_after,
    )
    leaf = cert(unknown.cert)
    assert subject_value(leaf, NameOID.ORGANIZATION_NAME) == ["Organisation 1234567890"]
    assert leaf.not_valid_after_utc == not_after
    named = issue_card(
        pki,
        hsa_id="SE5567000010-P0002",
        given_name="Per",
        surname="Persson",
        out_dir=tmp_path,
        org_name="Omsorgsbolaget Väst AB, Hisingen",
    )
    assert subject_value(cert(named.cert), NameOID.ORGANIZATION_NAME) == [
        "Omsorgsbolaget Väst AB, Hisingen"
    ]
    longest = "SE2120001355-" + "A" * 18
    assert len(longest) == 31
    issue_card(pki, hsa_id=longest, given_name="L", surname="Lång", out_dir=tmp_path)


@pytest.mark.parametrize(
    "bad",
    [
        "SE2120001355E0001",
        "se2120001355-E0001",
        "SE212000135-E0001",
        "SE2120001355-",
        "SE2120001355-E_1",
        "SE2120001355-E0001 ",
        "SE2120001355-" + "A" * 19,
        "",
    ],
)
def test_issue_card_rejects_malformed_hsa_ids(pki: TestPki, tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="HSA-ID"):
        issue_card(pki, hsa_id=bad, given_name="X", surname="Y", out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_issue_card_rejects_an_empty_period(pki: TestPki, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="before it is valid"):
        issue_card(
            pki,
            hsa_id="SE2120001355-E0043",
            given_name="X",
            surname="Y",
            out_dir=tmp_path,
            not_before=now(),
            not_after=now() - dt.timedelta(days=1),
        )


def test_issue_card_with_a_chosen_key_and_profile(pki: TestPki, tmp_path: Path) -> None:
    # How tests make a card with one defect: here an EC key, no EKU and a CA flag at once.
    chosen = ec.generate_private_key(ec.SECP384R1())
    card = issue_card(
        pki,
        hsa_id="SE2120001355-E0044",
        given_name="Ek",
        surname="Nyckel",
        out_dir=tmp_path,
        key=chosen,
        profile=CardProfile(key_usage=None, extended_key_usages=None, ca=True),
    )
    leaf = cert(card.cert)
    assert leaf.public_key() == chosen.public_key()
    loaded = load_pem_private_key(card.key.read_bytes(), password=None)
    assert loaded.public_key() == chosen.public_key()
    bundle = pkcs12.load_pkcs12(card.p12.read_bytes(), b"1234")
    assert bundle.key is not None and bundle.key.public_key() == chosen.public_key()
    kinds = {type(ext.value) for ext in leaf.extensions}
    assert x509.KeyUsage not in kinds and x509.ExtendedKeyUsage not in kinds
    assert extension(leaf, x509.BasicConstraints).value.ca is True


# CLI ---------------------------------------------------------------------------------------


@pytest.mark.integration  # runs the CLI in a process of its own
def test_cli_init_creates_a_pki_with_extra_hosts(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    result = CliRunner().invoke(
        pki_group, ["init", "--dir", str(directory), "--host", "idp.example.test"]
    )
    assert result.exit_code == 0, result.output
    assert "SITHS root CA: siths/root-ca.crt.pem" in result.output
    assert "Card anna (good, SE2120001355-E0001)" in result.output
    assert "trust anchors" in result.output
    pki = load_test_pki(directory)
    san = extension(cert(pki.tls_server_cert), x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "idp.example.test"]

    again = CliRunner().invoke(pki_group, ["init", "--dir", str(directory)])
    assert again.exit_code == 0, again.output
    assert "already exists" in again.output


def test_cli_show_lists_cards(pki: TestPki) -> None:
    result = CliRunner().invoke(pki_group, ["show", "--dir", str(pki.directory)])
    assert result.exit_code == 0, result.output
    assert "SE2120001355-E0001" in result.output
    assert "malformed_hsa_id" in result.output
    assert "SE2120001355-E0005.p12" in result.output
    assert "same card as erik_private" in result.output


def test_cli_issue(pki: TestPki, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        card_group,
        [
            "issue",
            "--hsa-id", "SE2120001355-E0077",
            "--given-name", "Märta",
            "--surname", "Lind",
            "--org-number", "2120001355",
            "--not-after", "2030-06-30",
            "--out", str(tmp_path),
            "--pki", str(pki.directory),
            "--p12-password", "pw",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for suffix in (".crt.pem", ".key.pem", ".p12"):
        path = tmp_path / f"SE2120001355-E0077{suffix}"
        assert path.is_file()
        assert str(path) in result.output
    leaf = cert(tmp_path / "SE2120001355-E0077.crt.pem")
    assert leaf.not_valid_after_utc == dt.datetime(2030, 6, 30, 23, 59, 59, tzinfo=dt.UTC)
    assert subject_value(leaf, NameOID.ORGANIZATION_NAME) == ["Göteborgs Stad"]
    pkcs12.load_pkcs12((tmp_path / "SE2120001355-E0077.p12").read_bytes(), b"pw")


def _issue(pki: TestPki, out: Path, *extra: str):
    return CliRunner().invoke(
        card_group,
        ["issue", "--given-name", "G", "--surname", "S", "--out", str(out),
         "--pki", str(pki.directory), *extra],
    )  # fmt: skip


def test_cli_issue_rejects_a_bad_hsa_id(pki: TestPki, tmp_path: Path) -> None:
    result = _issue(pki, tmp_path, "--hsa-id", "SE2120001355E0001")
    assert result.exit_code == 2
    assert "--hsa-id" in result.output
    assert "SE<10-digit organisation number>-<id>" in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_cli_issue_rejects_an_org_number_mismatch(pki: TestPki, tmp_path: Path) -> None:
    result = _issue(pki, tmp_path, "--hsa-id", "SE2120001355-E0001", "--org-number", "5567000010")
    assert result.exit_code == 2
    assert "--org-number" in result.output
    assert "2120001355" in result.output
    assert list(tmp_path.iterdir()) == []


def test_cli_issue_without_a_pki_says_how_to_make_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        card_group,
        ["issue", "--hsa-id", "SE2120001355-E0001", "--given-name", "G", "--surname", "S",
         "--out", str(tmp_path / "out"), "--pki", str(tmp_path / "nothing")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "idp pki init" in result.output

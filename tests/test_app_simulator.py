"""The simulated app's parts: cards on SoftHSM2 tokens, the PKCS#11 worker, the API client, CLIs.

Real SoftHSM2 tokens throughout (in a directory of this module's), real certificates from the
session's test PKI, and — for the client — the session's real IdP.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from idp.cli import main as idp_main
from idp.config import GOTEBORGS_STAD_ORG_NUMBER
from idp.methods.other_device.signature import signature_is_valid
from idp.siths.trust import load_siths_trust
from idp.siths.validation import SithsValidator
from siths_testkit.app_simulator import AppApiError, ScanResult, SithsEidApp, SoftHsmCard
from siths_testkit.app_simulator.token import der_from_raw_ecdsa
from siths_testkit.pki import TestPki
from siths_testkit.pki.softhsm import (
    TokenError,
    TokenNotFound,
    WrongPin,
    create_token,
    resolve_config,
    token_exists,
)
from siths_testkit.pki.tokens import issue_card_on_token, token_objects
from tests.conftest import IdpUnderTest
from tests.helpers.support import free_port, tls_context
from tests.helpers.token_cards import PIN, SO_PIN, TokenLab

ANNA = "SE2120001355-E0001"


@pytest.fixture(scope="module")
def lab(test_pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> TokenLab:
    return TokenLab(test_pki, tmp_path_factory.mktemp("softhsm-unit"))


@pytest.fixture(scope="module")
def rsa_card(lab: TokenLab) -> SoftHsmCard:
    return lab.card("unit-rsa", ANNA, "Anna", "Andersson")


@pytest.fixture(scope="module")
def ec_card(lab: TokenLab) -> SoftHsmCard:
    return lab.card("unit-ec", ANNA, "Anna", "Andersson", key_type="ec")


# --- the card on the token ------------------------------------------------------------------


@pytest.mark.parametrize("card_name", ["rsa_card", "ec_card"])
def test_private_key_was_made_on_the_token_and_cannot_leave_it(
    lab: TokenLab, card_name: str, request: pytest.FixtureRequest
) -> None:
    card: SoftHsmCard = request.getfixturevalue(card_name)
    objects = token_objects(lab.config, card.token_label, PIN)
    assert [obj.kind for obj in objects] == ["certificate", "private_key", "public_key"]
    private = objects[1]
    assert private.key_type == ("rsa" if card_name == "rsa_card" else "ec")
    assert private.sensitive and private.always_sensitive
    assert private.extractable is False and private.never_extractable  # generated there
    assert private.secret_readable is False
    assert private.can_sign and not private.can_decrypt
    # Key pair and certificate are tied together by label (the HSA-ID) and CKA_ID (the SKI).
    ski = card.certificate().extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert {(obj.label, obj.key_id) for obj in objects} == {(ANNA, ski.value.digest)}


def test_token_card_has_the_test_pkis_card_profile(
    test_pki: TestPki, rsa_card: SoftHsmCard, ec_card: SoftHsmCard
) -> None:
    file_card = x509.load_pem_x509_certificate(test_pki.cards["anna"].cert.read_bytes())
    hsa_ca = x509.load_pem_x509_certificate(test_pki.hsa_ca_cert.read_bytes())
    trust = load_siths_trust(test_pki.trust_anchors_file, test_pki.intermediates_file)
    validator = SithsValidator(trust, [GOTEBORGS_STAD_ORG_NUMBER])
    for card in (rsa_card, ec_card):
        certificate = card.certificate()
        certificate.verify_directly_issued_by(hsa_ca)
        assert certificate.subject == file_card.subject
        assert [ext.oid for ext in certificate.extensions] == [
            ext.oid for ext in file_card.extensions
        ]
        for extension in (x509.KeyUsage, x509.ExtendedKeyUsage, x509.BasicConstraints):
            assert (
                certificate.extensions.get_extension_for_class(extension).value
                == file_card.extensions.get_extension_for_class(extension).value
            )
        assert validator.validate(certificate).hsa_id.value == ANNA == card.hsa_id


def test_rsa_card_signs_pkcs1_sha256(rsa_card: SoftHsmCard) -> None:
    algorithm, signature = rsa_card.sign(b"order data")
    assert algorithm == "rsa-pkcs1-sha256" and len(signature) == 256
    public_key = rsa_card.certificate().public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(signature, b"order data", padding.PKCS1v15(), hashes.SHA256())
    assert signature_is_valid(rsa_card.certificate(), algorithm, signature, b"order data")
    assert not signature_is_valid(rsa_card.certificate(), algorithm, signature, b"other data")


def test_ec_card_signs_ecdsa_sha256_in_der(ec_card: SoftHsmCard) -> None:
    algorithm, signature = ec_card.sign(b"order data")
    assert algorithm == "ecdsa-sha256"
    r, s = decode_dss_signature(signature)  # DER, not the token's raw r‖s
    assert r > 0 and s > 0
    public_key = ec_card.certificate().public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signature, b"order data", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public_key.verify(signature, b"other data", ec.ECDSA(hashes.SHA256()))
    assert signature_is_valid(ec_card.certificate(), algorithm, signature, b"order data")


def test_raw_ecdsa_becomes_der() -> None:
    raw = (5).to_bytes(32, "big") + (7).to_bytes(32, "big")
    assert decode_dss_signature(der_from_raw_ecdsa(raw)) == (5, 7)
    for bad in (b"", b"\x01\x02\x03"):
        with pytest.raises(ValueError, match="even"):
            der_from_raw_ecdsa(bad)


def test_wrong_pin_and_missing_token_are_refused_as_a_card_would(
    lab: TokenLab, rsa_card: SoftHsmCard
) -> None:
    with pytest.raises(WrongPin, match="PIN for card 'unit-rsa' is wrong"):
        lab.open(rsa_card.token_label, pin="000000")
    with pytest.raises(WrongPin):
        lab.open(rsa_card.token_label, pin="1")  # shorter than any PIN can be
    with pytest.raises(TokenNotFound, match="no-such-card"):
        lab.open("no-such-card")
    with pytest.raises(TokenError, match="token label"):
        lab.open("x" * 33)
    assert lab.open(rsa_card.token_label).sign(b"x")[0] == "rsa-pkcs1-sha256"


def test_token_with_two_cards_needs_the_hsa_id(lab: TokenLab) -> None:
    lab.card("unit-two", ANNA, "Erik", "Ek", key_type="ec")
    other = "SE5567000010-P0001"
    issue_card_on_token(
        lab.pki,
        lab.config,
        "unit-two",
        PIN,
        hsa_id=other,
        given_name="Erik",
        surname="Ek",
        key_type="ec",
    )
    with pytest.raises(TokenError, match="several certificates"):
        lab.open("unit-two")
    chosen = SoftHsmCard("unit-two", PIN, config=lab.config, hsa_id=other)
    assert chosen.hsa_id == other
    algorithm, signature = chosen.sign(b"x")
    assert signature_is_valid(chosen.certificate(), algorithm, signature, b"x")


def test_nothing_stays_on_the_token_when_issuing_fails(lab: TokenLab) -> None:
    create_token(lab.config, "unit-empty", pin=PIN, so_pin=SO_PIN)
    with pytest.raises(ValueError, match="HSA"):
        issue_card_on_token(
            lab.pki, lab.config, "unit-empty", PIN, hsa_id="SE123", given_name="A", surname="B"
        )
    # A bad name is only found after the key pair was made: it is destroyed again.
    with pytest.raises(ValueError, match="given name"):
        issue_card_on_token(
            lab.pki,
            lab.config,
            "unit-empty",
            PIN,
            hsa_id=ANNA,
            given_name=" ",
            surname="B",
            key_type="ec",
        )
    assert token_objects(lab.config, "unit-empty", PIN) == []
    with pytest.raises(TokenError, match="exists already"):
        create_token(lab.config, "unit-empty", pin=PIN, so_pin=SO_PIN)


def test_one_card_signs_for_many_threads(rsa_card: SoftHsmCard, ec_card: SoftHsmCard) -> None:
    messages = [f"order {number}".encode() for number in range(32)]

    def sign(message: bytes) -> bool:
        card = rsa_card if message[-1] % 2 else ec_card
        algorithm, signature = card.sign(message)
        return signature_is_valid(card.certificate(), algorithm, signature, message)

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(sign, messages, timeout=60))


def test_open_tls_connections_survive_token_use(
    idp: IdpUnderTest, lab: TokenLab, rsa_card: SoftHsmCard
) -> None:
    """SoftHSM's C_Initialize/C_Finalize change OpenSSL's global state; the worker process
    keeps that away from this process's TLS connections (see siths_testkit.pki.softhsm)."""
    with httpx.Client(verify=tls_context(idp.ca_file)) as client:
        assert client.get(f"{idp.base_url}/saml/metadata").status_code == 200
        lab.card("unit-tls", ANNA, key_type="ec")  # a new token: the library is initialised again
        rsa_card.sign(b"x")
        assert client.get(f"{idp.base_url}/saml/metadata").status_code == 200


# --- SoftHSM2 configuration -----------------------------------------------------------------


@pytest.mark.integration  # runs the CLI in a process of its own
def test_configuration_is_ours_never_the_systems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SOFTHSM2_CONF", raising=False)
    default = resolve_config()
    assert default == tmp_path / "var/softhsm/softhsm2.conf"
    assert f"directories.tokendir = {tmp_path / 'var/softhsm/tokens'}" in default.read_text()
    explicit = resolve_config(tmp_path / "elsewhere" / "softhsm2.conf")
    assert (tmp_path / "elsewhere/tokens").is_dir() and explicit.is_file()
    monkeypatch.setenv("SOFTHSM2_CONF", str(explicit))
    assert resolve_config() == explicit
    with pytest.raises(TokenError, match="does not exist"):
        resolve_config(tmp_path / "missing.conf")
    assert not token_exists(explicit, "anything")


# --- the app's client against the real IdP --------------------------------------------------


def test_client_reports_the_apis_error_codes(idp: IdpUnderTest, rsa_card: SoftHsmCard) -> None:
    with SithsEidApp(idp.base_url, idp.ca_file) as app:
        with pytest.raises(AppApiError) as caught:
            app.scan("not a SITHS eID QR code")
        assert (caught.value.status_code, caught.value.error_code) == (400, "invalidParameters")
        nothing = ScanResult("no-order", "no-token", b"x", "", ())
        with pytest.raises(AppApiError) as caught:
            app.cancel(nothing)
        assert (caught.value.status_code, caught.value.error_code) == (404, "notFound")
        with pytest.raises(ValueError, match="no card"):
            app.sign(nothing)
        with pytest.raises(AppApiError) as caught:
            app.sign(nothing, card=rsa_card, certificates=[])  # refused by the schema
        assert caught.value.status_code == 422
    with (
        SithsEidApp(idp.base_url, idp.pki.root_ca_cert) as untrusting,
        pytest.raises(httpx.ConnectError),
    ):
        untrusting.scan("sithseid.x.1.y")  # the IdP's TLS certificate is checked


# --- the command line -----------------------------------------------------------------------


def test_card_issue_on_a_token_from_the_command_line(test_pki: TestPki, tmp_path: Path) -> None:
    config_file = tmp_path / "hsm" / "softhsm2.conf"  # created on first use
    args = ["card", "issue", "--hsa-id", ANNA, "--given-name", "Anna", "--surname", "Andersson"]
    args += ["--pki", str(test_pki.directory), "--softhsm-conf", str(config_file)]
    runner = CliRunner()
    first = runner.invoke(idp_main, [*args, "--token", "cli-card", "--pin", "9999"])
    assert first.exit_code == 0, first.output
    assert "Created SoftHSM2 token 'cli-card'" in first.output
    assert "certificate  on the token" in first.output
    card = SoftHsmCard("cli-card", "9999", config=config_file)
    assert card.hsa_id == ANNA
    # A second certificate on the same card (a second commission); the PIN must be right.
    other = ["--hsa-id", "SE5567000010-P0001", "--token", "cli-card", "--key-type", "ec"]
    wrong = runner.invoke(idp_main, [*args[:2], *args[4:], *other, "--pin", "1111"])
    assert wrong.exit_code == 1 and "PIN" in wrong.output
    second = runner.invoke(idp_main, [*args[:2], *args[4:], *other, "--pin", "9999"])
    assert second.exit_code == 0, second.output
    kinds = [obj.kind for obj in token_objects(config_file, "cli-card", "9999")]
    assert kinds.count("private_key") == 2 and kinds.count("certificate") == 2
    # Without --token, --out is needed (files), as before.
    no_out = runner.invoke(idp_main, args)
    assert no_out.exit_code == 2 and "--out" in no_out.output


def test_app_login_needs_exactly_one_of_qr_and_autostart_and_an_idp(
    test_pki: TestPki, tmp_path: Path
) -> None:
    runner = CliRunner()
    common = ["app", "login", "--token", "t", "--pin", "1234", "--ca", str(test_pki.tls_ca_cert)]
    common += ["--softhsm-conf", str(tmp_path)]  # not var/softhsm of the working tree
    neither = runner.invoke(idp_main, common)
    assert neither.exit_code == 2 and "exactly one of --qr and --autostart" in neither.output
    both = runner.invoke(idp_main, [*common, "--qr", "a", "--autostart", "b"])
    assert both.exit_code == 2
    port = free_port()  # nothing listens there
    away = runner.invoke(
        idp_main, [*common, "--autostart", "b", "--base-url", f"https://localhost:{port}"]
    )
    assert away.exit_code == 1 and "Cannot talk to the IdP" in away.output

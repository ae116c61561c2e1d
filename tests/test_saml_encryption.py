"""Encrypted Assertions (idp/saml/encryption.py) for SPs that publish an encryption key.

Every Response here is decrypted by something other than the code that encrypted it: the
``xmlsec1`` program (what pysaml2 runs), pysaml2 as the SP, and the ``cryptography`` library
reading the EncryptedKey's stated parameters (RSA-OAEP digest and MGF, AES-GCM) by itself. The
python ``xmlsec`` bindings decrypt them too. Then the decrypted Assertion's own signature is
checked, the Response is checked against the SAML schemas, and no refused algorithm (3DES,
AES-CBC, RSA PKCS#1 v1.5) appears anywhere.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import logging
import subprocess
import urllib.parse
from pathlib import Path

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree
from saml2 import BINDING_HTTP_REDIRECT
from saml2.xml.schema import validate as validate_with_saml_schemas

from idp.config import Settings
from idp.federation.checks import validate_metadata
from idp.federation.idp_metadata import idp_metadata_xml
from idp.saml import encryption
from idp.saml.bindings import read_redirect_query
from idp.saml.encryption import (
    AES128_CBC,
    AES128_GCM,
    AES256_CBC,
    AES256_GCM,
    MGF1_SHA1,
    MGF1_SHA256,
    REFUSED_ALGORITHMS,
    RSA_1_5,
    RSA_OAEP,
    RSA_OAEP_MGF1P,
    SHA1,
    TRIPLEDES_CBC,
    KeyOffer,
    MethodOffer,
    choose_recipient,
)
from idp.saml.response import Addressing, NameId, build_login_response, new_subject
from idp.saml.server import AuthnRequestInfo, SamlIdentityProvider, SamlRequestRejected
from idp.saml.xmlsec_backend import SHA256, SHA512, shared_backend
from siths_testkit.pki import TestPki
from tests.helpers.certificates import self_signed
from tests.helpers.saml_sp import TestServiceProvider as ServiceProvider
from tests.helpers.saml_sp import anna, in_process_idp, registered_service_provider

NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xenc": "http://www.w3.org/2001/04/xmlenc#",
    "xenc11": "http://www.w3.org/2009/xmlenc11#",
}
RESPONSE = "urn:oasis:names:tc:SAML:2.0:protocol:Response"
ASSERTION = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"
HSA_ID = "http://sambi.se/attributes/1/employeeHsaId"
HASHES = {
    SHA1: hashes.SHA1,
    SHA256: hashes.SHA256,
    SHA512: hashes.SHA512,
    MGF1_SHA1: hashes.SHA1,
    MGF1_SHA256: hashes.SHA256,
}
ALLOWED = {AES256_GCM, AES128_GCM, RSA_OAEP_MGF1P, RSA_OAEP}

# SP metadata preferences → what the IdP must encrypt with: (content, key transport, OAEP
# digest, MGF or None for rsa-oaep-mgf1p, whose MGF is fixed).
CASES: dict[str, tuple[tuple[tuple[str, str | None, str | None], ...], tuple]] = {
    "no-preference": ((), (AES256_GCM, RSA_OAEP_MGF1P, SHA1, None)),
    "aes128-gcm": (((AES128_GCM, None, None),), (AES128_GCM, RSA_OAEP_MGF1P, SHA1, None)),
    "cbc-then-gcm": (
        ((AES128_CBC, None, None), (AES256_GCM, None, None)),
        (AES256_GCM, RSA_OAEP_MGF1P, SHA1, None),
    ),
    "mgf1p-sha256": (
        ((RSA_OAEP_MGF1P, SHA256, None),),
        (AES256_GCM, RSA_OAEP_MGF1P, SHA256, None),
    ),
    "xmlenc11-oaep": (((RSA_OAEP, None, None),), (AES256_GCM, RSA_OAEP, SHA256, MGF1_SHA1)),
    "xmlenc11-oaep-sha512-mgf1sha256": (
        ((AES128_GCM, None, None), (RSA_OAEP, SHA512, MGF1_SHA256)),
        (AES128_GCM, RSA_OAEP, SHA512, MGF1_SHA256),
    ),
    "rsa15-then-oaep": (
        ((RSA_1_5, None, None), (RSA_OAEP, SHA256, None)),
        (AES256_GCM, RSA_OAEP, SHA256, MGF1_SHA1),
    ),
    "only-refused": (
        ((TRIPLEDES_CBC, None, None), (AES256_CBC, None, None), (RSA_1_5, None, None)),
        (AES256_GCM, RSA_OAEP_MGF1P, SHA1, None),
    ),
}
PLAIN_SP = "https://plain.example.test/sp"
WEAK_SP = "https://weak-key.example.test/sp"


def sp_id(case: str) -> str:
    return f"https://{case}.example.test/sp"


@pytest.fixture(scope="module")
def encrypting(
    test_pki: TestPki, tmp_path_factory: pytest.TempPathFactory
) -> tuple[SamlIdentityProvider, dict[str, ServiceProvider]]:
    return in_process_idp(
        tmp_path_factory.mktemp("encryption"),
        test_pki.directory,
        {
            **{
                sp_id(case): {"encryption": True, "encryption_methods": methods}
                for case, (methods, _expected) in CASES.items()
            },
            PLAIN_SP: {},
            WEAK_SP: {"encryption": True, "encryption_key_bits": 1024},
        },
    )


def request_to(sp: ServiceProvider, request_id: str = "_enc-1") -> AuthnRequestInfo:
    return AuthnRequestInfo(request_id, sp.entity_id, sp.acs_url, "", False, False)


def key_transport(encrypted_data: etree._Element) -> etree._Element:
    return encrypted_data.find("ds:KeyInfo/xenc:EncryptedKey/xenc:EncryptionMethod", NS)


def algorithms_of(xml: bytes) -> tuple[str, str, str, str | None]:
    root = etree.fromstring(xml)
    (data,) = root.findall("saml:EncryptedAssertion/xenc:EncryptedData", NS)
    method = key_transport(data)
    mgf = method.find("xenc11:MGF", NS)
    return (
        data.find("xenc:EncryptionMethod", NS).get("Algorithm"),
        method.get("Algorithm"),
        method.find("ds:DigestMethod", NS).get("Algorithm"),
        mgf.get("Algorithm") if mgf is not None else None,
    )


def unwrap_content_key(xml: bytes, private_key_file: Path) -> bytes:
    """The AES key, by ``cryptography`` alone, following only what the EncryptedKey states:
    RSA-OAEP with its DigestMethod and MGF (MGF1-SHA1 for rsa-oaep-mgf1p)."""
    method = key_transport(etree.fromstring(xml).find(".//xenc:EncryptedData", NS))
    mgf = method.find("xenc11:MGF", NS)
    digest = HASHES[method.find("ds:DigestMethod", NS).get("Algorithm")]()
    mask = HASHES[mgf.get("Algorithm")]() if mgf is not None else hashes.SHA1()  # noqa: S303 (MGF1 padding)
    key = serialization.load_pem_private_key(private_key_file.read_bytes(), password=None)
    wrapped = method.getparent().findtext("xenc:CipherData/xenc:CipherValue", "", NS)
    return key.decrypt(
        base64.b64decode(wrapped),
        padding.OAEP(mgf=padding.MGF1(mask), algorithm=digest, label=None),
    )


def decrypt_independently(xml: bytes, private_key_file: Path) -> bytes:
    """The EncryptedAssertion's plaintext, by ``cryptography`` alone: the unwrapped key, then
    AES-GCM over IV (96 bits) ‖ ciphertext ‖ tag (128 bits), as XML Encryption 1.1 defines."""
    data = etree.fromstring(xml).find("saml:EncryptedAssertion/xenc:EncryptedData", NS)
    blob = base64.b64decode(data.findtext("xenc:CipherData/xenc:CipherValue", "", NS))
    content_key = unwrap_content_key(xml, private_key_file)
    return AESGCM(content_key).decrypt(blob[:12], blob[12:], None)


def assert_signed_assertion(plaintext: bytes, test_pki: TestPki) -> etree._Element:
    """The decrypted Assertion parses on its own and its signature verifies."""
    assertion = etree.fromstring(plaintext)
    assert assertion.tag == f"{{{NS['saml']}}}Assertion"
    assert shared_backend("/usr/bin/xmlsec1").validate_signature(
        plaintext, str(test_pki.idp_signing_cert), "pem", ASSERTION, assertion.get("ID")
    )
    return assertion


@pytest.mark.parametrize("case", list(CASES))
def test_the_sps_preferences_choose_the_algorithms_and_anyone_can_decrypt(
    case: str, encrypting, test_pki: TestPki
) -> None:
    idp, sps = encrypting
    sp = sps[sp_id(case)]
    built = idp.build_authn_response(request_to(sp), anna())
    validate_with_saml_schemas(built.xml.decode("utf-8"))
    root = etree.fromstring(built.xml)

    assert algorithms_of(built.xml) == CASES[case][1]
    # Nothing readable is left: no Assertion in clear, no name, no HSA-ID.
    assert root.find("saml:Assertion", NS) is None
    assert b"SE2120001355-E0001" not in built.xml and b"Anna" not in built.xml
    # Only the accepted algorithms, whatever the SP asked for.
    used = {element.get("Algorithm") for element in root.iter(f"{{{NS['xenc']}}}EncryptionMethod")}
    assert used <= ALLOWED
    for refused in REFUSED_ALGORITHMS:
        assert refused.encode() not in built.xml
    # The Response's signature covers the EncryptedAssertion as sent.
    assert shared_backend("/usr/bin/xmlsec1").validate_signature(
        built.xml, str(test_pki.idp_signing_cert), "pem", RESPONSE, root.get("ID")
    )
    # The SP's certificate is named in the EncryptedKey, for an SP holding several keys.
    named = root.findtext(".//xenc:EncryptedKey/ds:KeyInfo/ds:X509Data/ds:X509Certificate", "", NS)
    published = x509.load_pem_x509_certificate(sp.encryption_cert.read_bytes())
    assert x509.load_der_x509_certificate(base64.b64decode(named)) == published

    assertion = assert_signed_assertion(
        decrypt_independently(built.xml, sp.encryption_key), test_pki
    )
    assert assertion.findtext(".//saml:AttributeValue", namespaces=NS) == "SE2120001355-E0001"

    # The python xmlsec bindings decrypt it in place too.
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_file(str(sp.encryption_key), xmlsec.constants.KeyDataFormatPem))
    data = root.find("saml:EncryptedAssertion/xenc:EncryptedData", NS)
    decrypted = xmlsec.EncryptionContext(manager).decrypt(data)
    assert decrypted.get("ID") == assertion.get("ID")


def test_each_response_has_its_own_content_key(encrypting) -> None:
    idp, sps = encrypting
    sp = sps[sp_id("no-preference")]
    keys = {
        unwrap_content_key(idp.build_authn_response(request_to(sp), anna()).xml, sp.encryption_key)
        for _ in range(3)
    }
    assert len(keys) == 3 and all(len(key) == 32 for key in keys)


def test_an_encryption_failure_sends_nothing(encrypting) -> None:
    """Encryption failing (here: RSA-OAEP with SHA-512 cannot wrap anything under a 1024-bit
    key, which choose_recipient would never let through) is an error, never a Response with
    the Assertion in clear."""
    idp, sps = encrypting
    sp = sps[sp_id("no-preference")]
    good = idp.describe_sp(sp.entity_id).encryption
    broken = dataclasses.replace(
        good,
        public_key=rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(),  # noqa: S505 (too small on purpose)
        algorithms=dataclasses.replace(good.algorithms, oaep_digest=SHA512),
    )
    snapshot = idp._snapshot()
    with pytest.raises(encryption.EncryptionError, match="encrypting the Assertion for CN="):
        build_login_response(
            Addressing("https://idp.example.test/saml/metadata", sp.acs_url, "_broken"),
            audience=sp.entity_id,
            subject=new_subject(
                NameId("n", "urn:oasis:names:tc:SAML:2.0:nameid-format:transient", "", "")
            ),
            authn_instant=0,
            authn_context_class="http://id.sambi.se/loa/loa3",
            attributes=(),
            lifetime=dt.timedelta(minutes=5),
            signer=snapshot.signer,
            encrypt_for=broken,
        )


def test_the_xmlsec1_program_decrypts_what_pysaml2_sps_get(
    encrypting, test_pki: TestPki, tmp_path: Path
) -> None:
    idp, sps = encrypting
    sp = sps[sp_id("no-preference")]
    built = idp.build_authn_response(request_to(sp), anna())
    response_file = tmp_path / "response.xml"
    response_file.write_bytes(built.xml)
    result = subprocess.run(
        ["xmlsec1", "--decrypt", "--privkey-pem", str(sp.encryption_key), str(response_file)],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    decrypted = etree.fromstring(result.stdout)
    assert decrypted.find(".//xenc:EncryptedData", NS) is None
    (assertion,) = decrypted.findall("saml:EncryptedAssertion/saml:Assertion", NS)
    assert_signed_assertion(etree.tostring(assertion), test_pki)

    # With another key it cannot.
    other_key = sps[sp_id("aes128-gcm")].encryption_key
    wrong = subprocess.run(
        ["xmlsec1", "--decrypt", "--privkey-pem", str(other_key), str(response_file)],
        capture_output=True,
        check=False,
    )
    assert wrong.returncode != 0


def test_pysaml2_as_the_sp_decrypts_and_verifies(encrypting) -> None:
    idp, sps = encrypting
    sp = sps[sp_id("no-preference")]
    built = idp.build_authn_response(request_to(sp, "_enc-pysaml2"), anna())
    parsed = sp.parse(built.encoded, "_enc-pysaml2")
    assert parsed.ava[HSA_ID] == ["SE2120001355-E0001"]
    assert parsed.assertion.subject.name_id.text == built.subject.name_id
    assert parsed.assertion.signature is not None


def test_an_sp_without_an_encryption_key_gets_a_signed_assertion_in_clear(encrypting) -> None:
    idp, sps = encrypting
    sp = sps[PLAIN_SP]
    assert idp.describe_sp(PLAIN_SP).encryption is None
    built = idp.build_authn_response(request_to(sp, "_plain"), anna())
    root = etree.fromstring(built.xml)
    assert root.find("saml:EncryptedAssertion", NS) is None
    assert root.find("saml:Assertion/ds:Signature", NS) is not None
    assert sp.parse(built.encoded, "_plain").ava[HSA_ID] == ["SE2120001355-E0001"]


def test_a_weak_encryption_key_is_not_used_and_says_why(encrypting) -> None:
    idp, sps = encrypting
    described = idp.describe_sp(WEAK_SP)
    assert described.encryption is None
    assert described.encryption_refusal is None  # not required for Sambi SPs here
    built = idp.build_authn_response(request_to(sps[WEAK_SP]), anna())
    assert etree.fromstring(built.xml).find("saml:Assertion", NS) is not None


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def test_unusable_keys_are_skipped_and_logged(encrypting, caplog: pytest.LogCaptureFixture) -> None:
    _idp, sps = encrypting
    rsa_sp = sps[sp_id("no-preference")]
    good = x509.load_pem_x509_certificate(rsa_sp.encryption_cert.read_bytes())
    weak = x509.load_pem_x509_certificate(sps[WEAK_SP].encryption_cert.read_bytes())
    ec_certificate = self_signed(ec.generate_private_key(ec.SECP256R1()))
    offers = (
        KeyOffer(b"not a certificate"),
        KeyOffer(der(weak)),
        KeyOffer(der(ec_certificate)),
        KeyOffer(der(good), (MethodOffer(AES128_GCM),)),
    )
    choose_recipient.cache_clear()  # each problem is logged when first seen: see it now
    with caplog.at_level(logging.WARNING, logger=encryption.__name__):
        choice = choose_recipient("https://unusable-keys.example.test/sp", offers)
    assert choice.recipient is not None
    assert choice.recipient.algorithms.content == AES128_GCM
    assert choice.problems == (
        "an encryption certificate is not a valid DER X.509 certificate",
        "CN=weak-key.example.test-encryption has a 1024-bit RSA key (minimum 2048)",
        "CN=sp has an EC key (secp256r1), not an RSA key (RSA-OAEP only)",
    )
    logged = [record.getMessage() for record in caplog.records]
    assert len(logged) == 3 and all("unusable-keys.example.test" in line for line in logged)

    alone = choose_recipient("https://weak-only.example.test/sp", (KeyOffer(der(weak)),))
    assert alone.recipient is None and "1024-bit" in alone.problems[0]


def test_refused_preferences_fall_back_to_the_defaults_and_are_logged(
    encrypting, caplog: pytest.LogCaptureFixture
) -> None:
    _idp, sps = encrypting
    good = x509.load_pem_x509_certificate(sps[sp_id("no-preference")].encryption_cert.read_bytes())
    offers = (
        KeyOffer(
            der(good),
            (MethodOffer(TRIPLEDES_CBC), MethodOffer(RSA_1_5), MethodOffer(RSA_OAEP, "urn:md5")),
        ),
    )
    choose_recipient.cache_clear()  # each problem is logged when first seen: see it now
    with caplog.at_level(logging.WARNING, logger=encryption.__name__):
        choice = choose_recipient("https://old-fashioned.example.test/sp", offers)
    assert choice.recipient is not None
    assert dataclasses.astuple(choice.recipient.algorithms) == (
        AES256_GCM,
        RSA_OAEP_MGF1P,
        SHA1,
        None,
    )
    assert [problem.split(":")[0] for problem in choice.problems] == [
        "content encryption",
        "key transport",
    ]
    assert "3DES" in choice.problems[0] and "RSA PKCS#1 v1.5" in choice.problems[1]
    assert len(caplog.records) == 2


# --- IDP_REQUIRE_ENCRYPTION_PROFILES -----------------------------------------------------------


@pytest.fixture(scope="module")
def requiring(test_pki: TestPki, tmp_path_factory: pytest.TempPathFactory):
    """An IdP requiring encryption for Sambi SPs, with one SP that can get it and two that
    cannot (no key; a 1024-bit key)."""
    work = tmp_path_factory.mktemp("requiring")
    metadata_dir = work / "sp-metadata"
    metadata_dir.mkdir()
    settings = Settings(
        var_dir=work / "var",
        pki_dir=test_pki.directory,
        sp_metadata_dir=metadata_dir,
        base_url="https://idp.example.test",
        require_encryption_profiles=["sambi"],
    )
    idp = SamlIdentityProvider(settings, b"pairwise secret")
    idp_metadata = work / "idp-metadata.xml"
    idp_metadata.write_text(idp_metadata_xml(idp), encoding="utf-8")
    sps = {
        name: registered_service_provider(
            work / name, f"https://{name}.example.test/sp", idp_metadata, metadata_dir, **options
        )
        for name, options in {
            "with-key": {"encryption": True},
            "without-key": {},
            "weak-key": {"encryption": True, "encryption_key_bits": 1024},
        }.items()
    }
    return idp, sps


def parse_request(idp: SamlIdentityProvider, sp: ServiceProvider):
    url, _request_id = sp.login_url()
    received = read_redirect_query(urllib.parse.urlsplit(url).query)
    return idp.parse_authn_request(BINDING_HTTP_REDIRECT, received)


def test_required_encryption_refuses_an_sp_without_a_usable_key(requiring) -> None:
    idp, sps = requiring
    info, described = parse_request(idp, sps["with-key"])
    assert described.encryption is not None
    built = idp.build_authn_response(info, anna())
    assert etree.fromstring(built.xml).find("saml:EncryptedAssertion", NS) is not None

    for name, why in (
        ("without-key", "its metadata publishes no encryption key"),
        ("weak-key", "1024-bit RSA key (minimum 2048)"),
    ):
        with pytest.raises(SamlRequestRejected) as refused:
            parse_request(idp, sps[name])
        assert refused.value.reason == "encryption_required"
        assert "sent only encrypted" in refused.value.detail and why in refused.value.detail
        # Nor is a Response ever built for it (the metadata may change mid-login).
        with pytest.raises(SamlRequestRejected) as refused:
            idp.build_authn_response(request_to(sps[name]), anna())
        assert refused.value.reason == "encryption_required"


def test_an_unknown_profile_name_stops_the_start(test_pki: TestPki, tmp_path: Path) -> None:
    settings = Settings(
        var_dir=tmp_path / "var",
        pki_dir=test_pki.directory,
        sp_metadata_dir=tmp_path,
        require_encryption_profiles=["eid"],
    )
    with pytest.raises(ValueError, match=r"unknown profiles \['eid'\].*'swedish-eid'"):
        SamlIdentityProvider(settings, b"pairwise secret")


# --- the validator reports the same choice -----------------------------------------------------


@pytest.mark.parametrize(
    "case", ["no-preference", "xmlenc11-oaep-sha512-mgf1sha256", "only-refused"]
)
def test_the_validator_reports_the_choice_the_runtime_makes(
    case: str, encrypting, tmp_path: Path
) -> None:
    idp, sps = encrypting
    sp = sps[sp_id(case)]
    path = tmp_path / "sp.xml"
    path.write_text(sp.metadata_xml, encoding="utf-8")
    report = validate_metadata(str(path))
    (check,) = [check for check in report.checks if check.name == "encryption"]
    content, transport, digest, mgf = algorithms_of(
        idp.build_authn_response(request_to(sp), anna()).xml
    )
    assert check.passed
    assert check.detail.startswith("Assertions encrypted for CN=")
    assert f"with {content}, key transport {transport} ({digest}" in check.detail
    assert (f", {mgf})" in check.detail) is (mgf is not None)
    assert ("never used here" in check.detail) is (case == "only-refused")
    assert report.ok, [line.line() for line in report.failed()]


def test_the_validator_fails_an_sp_whose_encryption_key_cannot_be_used(
    encrypting, tmp_path: Path
) -> None:
    _idp, sps = encrypting
    for entity_id, passed, detail in (
        (PLAIN_SP, True, "no encryption key: Assertions are signed, not encrypted"),
        (
            WEAK_SP,
            False,
            "no usable encryption key; CN=weak-key.example.test-encryption has a 1024-bit "
            "RSA key (minimum 2048)",
        ),
    ):
        path = tmp_path / "sp.xml"
        path.write_text(sps[entity_id].metadata_xml, encoding="utf-8")
        (check,) = [c for c in validate_metadata(str(path)).checks if c.name == "encryption"]
        assert (check.passed, check.detail) == (passed, detail)

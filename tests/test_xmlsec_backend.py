"""The in-process XML-signature backend (idp/saml/xmlsec_backend.py).

Interoperability is checked against the real ``xmlsec1`` program both ways; every refusal is
checked on documents an attacker could send. The IdP's own pysaml2 ``Server`` is checked to sign
and verify with the backend and to start no ``xmlsec1`` process while doing so.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree
from saml2 import BINDING_HTTP_POST, saml, samlp
from saml2.client import Saml2Client
from saml2.s_utils import sid
from saml2.sigver import (
    CryptoBackend,
    CryptoBackendXmlSec1,
    SignatureError,
    pre_signature_part,
    read_cert_from_file,
)

from idp.saml.bindings import BindingMessage
from idp.saml.server import AuthnRequestInfo, SamlIdentityProvider, SamlRequestRejected
from idp.saml.statuses import NO_PASSIVE
from idp.saml.xmlsec_backend import (
    ECDSA_SHA256,
    RSA_SHA256,
    RSA_SHA512,
    SHA256,
    SHA512,
    XmlSecBackend,
    shared_backend,
)
from siths_testkit.pki import TestPki
from tests.helpers.certificates import make_self_signed

# Aliased so that pytest does not try to collect the dataclass as a test class.
from tests.helpers.saml_sp import TestServiceProvider as ServiceProvider
from tests.helpers.saml_sp import anna, in_process_idp

XMLSEC1 = "/usr/bin/xmlsec1"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
HMAC_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"
RESPONSE = "urn:oasis:names:tc:SAML:2.0:protocol:Response"
ASSERTION = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"
ENTITY_DESCRIPTOR = "urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor"
NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}


@dataclass(frozen=True)
class KeyPair:
    key: Path
    cert: Path

    @property
    def cert_text(self) -> str:
        """The certificate as pysaml2 puts it in ds:X509Certificate."""
        return read_cert_from_file(str(self.cert), "pem")


@dataclass(frozen=True)
class Template:
    xml: str
    response_id: str
    assertion_id: str


@pytest.fixture(scope="module")
def backend() -> XmlSecBackend:
    return XmlSecBackend(XMLSEC1)


@pytest.fixture(scope="module")
def xmlsec1() -> CryptoBackendXmlSec1:
    """pysaml2's own backend: the ``xmlsec1`` program."""
    return CryptoBackendXmlSec1(XMLSEC1)


@pytest.fixture(scope="module")
def idp_keys(test_pki: TestPki) -> KeyPair:
    return KeyPair(test_pki.idp_signing_key, test_pki.idp_signing_cert)


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    key, cert = make_self_signed(tmp_path_factory.mktemp("other"), "attacker")
    return KeyPair(key, cert)


@pytest.fixture(scope="module")
def ec_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    directory = tmp_path_factory.mktemp("ec")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    pair = KeyPair(directory / "ec.key.pem", directory / "ec.crt.pem")
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pair


def make_template(
    keys: KeyPair, sign_alg: str = RSA_SHA256, digest_alg: str = SHA256, hsa_id: str = "E0001"
) -> Template:
    """An unsigned Response with an Assertion, both carrying signature templates."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    assertion = saml.Assertion(
        id=sid(),
        version="2.0",
        issue_instant=now,
        issuer=saml.Issuer(text="https://idp.example.test/saml/metadata"),
        subject=saml.Subject(name_id=saml.NameID(text="anna")),
        attribute_statement=[
            saml.AttributeStatement(
                attribute=[
                    saml.Attribute(
                        name="http://sambi.se/attributes/1/employeeHsaId",
                        attribute_value=[saml.AttributeValue(text=f"SE2120001355-{hsa_id}")],
                    )
                ]
            )
        ],
    )
    assertion.signature = pre_signature_part(
        assertion.id, keys.cert_text, 1, sign_alg=sign_alg, digest_alg=digest_alg
    )
    response = samlp.Response(
        id=sid(),
        version="2.0",
        issue_instant=now,
        issuer=saml.Issuer(text="https://idp.example.test/saml/metadata"),
        status=samlp.Status(status_code=samlp.StatusCode(value=samlp.STATUS_SUCCESS)),
        assertion=[assertion],
    )
    response.signature = pre_signature_part(
        response.id, keys.cert_text, 1, sign_alg=sign_alg, digest_alg=digest_alg
    )
    return Template(response.to_string().decode("utf-8"), response.id, assertion.id)


def sign_both(signer: CryptoBackend, template: Template, key: Path) -> str:
    """Sign the Assertion, then the Response, as pysaml2's IdP does."""
    signed = signer.sign_statement(template.xml, ASSERTION, str(key), template.assertion_id)
    return signer.sign_statement(signed, RESPONSE, str(key), template.response_id)


def run_xmlsec1_verify(
    xml: str | bytes, cert: Path, node_name: str, node_id: str | None, work: Path
) -> subprocess.CompletedProcess:
    """Verify with the ``xmlsec1`` program, with the options pysaml2 gives it."""
    path = work / f"verify-{sid()}.xml"
    path.write_bytes(xml.encode("utf-8") if isinstance(xml, str) else xml)
    command = [
        XMLSEC1,
        "--verify",
        "--enabled-reference-uris",
        "empty,same-doc",
        "--pubkey-cert-pem",
        str(cert),
        "--id-attr:ID",
        node_name,
    ]
    if node_id:
        command += ["--node-id", node_id]
    return subprocess.run(
        [*command, str(path)], capture_output=True, text=True, check=False, timeout=30
    )


def tree(xml: str) -> etree._Element:
    return etree.fromstring(xml.encode("utf-8"))


def serialise(root: etree._Element) -> str:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8").decode("utf-8")


# --- interoperability with the xmlsec1 program ------------------------------------------------


@pytest.mark.parametrize(
    ("sign_alg", "digest_alg"), [(RSA_SHA256, SHA256), (RSA_SHA512, SHA512), (RSA_SHA256, SHA512)]
)
def test_signed_in_process_verifies_with_xmlsec1(
    backend: XmlSecBackend, idp_keys: KeyPair, tmp_path: Path, sign_alg: str, digest_alg: str
) -> None:
    template = make_template(idp_keys, sign_alg, digest_alg)
    signed = sign_both(backend, template, idp_keys.key)
    for node_name, node_id in (
        (RESPONSE, template.response_id),
        (ASSERTION, template.assertion_id),
    ):
        result = run_xmlsec1_verify(signed, idp_keys.cert, node_name, node_id, tmp_path)
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stdout + result.stderr


def test_ecdsa_signed_in_process_verifies_with_xmlsec1(
    backend: XmlSecBackend, ec_keys: KeyPair, tmp_path: Path
) -> None:
    template = make_template(ec_keys, ECDSA_SHA256, SHA256)
    signed = sign_both(backend, template, ec_keys.key)
    result = run_xmlsec1_verify(signed, ec_keys.cert, ASSERTION, template.assertion_id, tmp_path)
    assert result.returncode == 0, result.stderr
    assert backend.validate_signature(
        signed, str(ec_keys.cert), "pem", RESPONSE, template.response_id
    )


def test_signed_by_xmlsec1_verifies_in_process(
    backend: XmlSecBackend, xmlsec1: CryptoBackendXmlSec1, idp_keys: KeyPair, tmp_path: Path
) -> None:
    template = make_template(idp_keys)
    signed = sign_both(xmlsec1, template, idp_keys.key)
    cert = str(idp_keys.cert)
    assert backend.validate_signature(signed, cert, "pem", RESPONSE, template.response_id)
    assert backend.validate_signature(signed, cert, "pem", ASSERTION, template.assertion_id)
    der = tmp_path / "idp.der"
    der.write_bytes(
        x509.load_pem_x509_certificate(idp_keys.cert.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
    )
    assert backend.validate_signature(signed, str(der), "der", ASSERTION, template.assertion_id)


def test_signed_metadata_root_without_node_id(
    backend: XmlSecBackend, idp_keys: KeyPair, tmp_path: Path
) -> None:
    """pysaml2 signs and checks metadata without a node ID: the root element is meant."""
    from saml2 import md

    descriptor = md.EntityDescriptor(entity_id="https://idp.example.test/saml/metadata", id=sid())
    descriptor.signature = pre_signature_part(
        descriptor.id, idp_keys.cert_text, 1, sign_alg=RSA_SHA256, digest_alg=SHA256
    )
    signed = backend.sign_statement(str(descriptor), ENTITY_DESCRIPTOR, str(idp_keys.key), None)
    result = run_xmlsec1_verify(signed, idp_keys.cert, ENTITY_DESCRIPTOR, None, tmp_path)
    assert result.returncode == 0, result.stderr
    assert backend.validate_signature(signed, str(idp_keys.cert), "pem", ENTITY_DESCRIPTOR, None)
    with pytest.raises(SignatureError):
        backend.validate_signature(signed, str(idp_keys.cert), "pem", RESPONSE, None)


# --- refusals ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed(backend: XmlSecBackend, idp_keys: KeyPair) -> tuple[str, Template]:
    template = make_template(idp_keys)
    return sign_both(backend, template, idp_keys.key), template


def test_tampered_content_is_refused(
    backend: XmlSecBackend, idp_keys: KeyPair, signed: tuple[str, Template], tmp_path: Path
) -> None:
    xml, template = signed
    tampered = xml.replace("SE2120001355-E0001", "SE2120001355-E0005")
    assert tampered != xml
    for node_name, node_id in (
        (RESPONSE, template.response_id),
        (ASSERTION, template.assertion_id),
    ):
        with pytest.raises(SignatureError):
            backend.validate_signature(tampered, str(idp_keys.cert), "pem", node_name, node_id)
        # The xmlsec1 program agrees.
        result = run_xmlsec1_verify(tampered, idp_keys.cert, node_name, node_id, tmp_path)
        assert result.returncode != 0


def test_wrong_key_is_refused(
    backend: XmlSecBackend, other_keys: KeyPair, signed: tuple[str, Template]
) -> None:
    xml, template = signed
    with pytest.raises(SignatureError):
        backend.validate_signature(
            xml, str(other_keys.cert), "pem", ASSERTION, template.assertion_id
        )


def test_key_in_keyinfo_is_never_used(
    backend: XmlSecBackend, idp_keys: KeyPair, other_keys: KeyPair
) -> None:
    """Signed by an attacker who puts their own certificate in KeyInfo: refused."""
    template = make_template(other_keys)
    forged = sign_both(backend, template, other_keys.key)
    assert other_keys.cert_text in forged
    # Valid for the attacker's key, so only the choice of key can refuse it.
    assert backend.validate_signature(
        forged, str(other_keys.cert), "pem", ASSERTION, template.assertion_id
    )
    with pytest.raises(SignatureError):
        backend.validate_signature(
            forged, str(idp_keys.cert), "pem", ASSERTION, template.assertion_id
        )


def test_duplicated_assertion_with_the_original_signature_is_refused(
    backend: XmlSecBackend, idp_keys: KeyPair, signed: tuple[str, Template]
) -> None:
    """XSW: an evil copy with the same ID (and signature) first, the original hidden later."""
    xml, template = signed
    root = tree(xml)
    original = root.find("saml:Assertion", NS)
    evil = copy.deepcopy(original)
    evil.find(".//saml:AttributeValue", NS).text = "SE2120001355-E0005"
    original.addprevious(evil)
    extensions = etree.Element(f"{{{NS['samlp']}}}Extensions")
    root.find("saml:Issuer", NS).addnext(extensions)
    extensions.append(original)  # moved out of the way, still validly signed
    wrapped = serialise(root)
    with pytest.raises(SignatureError, match="carried by 2"):
        backend.validate_signature(
            wrapped, str(idp_keys.cert), "pem", ASSERTION, template.assertion_id
        )


def test_signature_moved_to_an_evil_assertion_is_refused(
    backend: XmlSecBackend, idp_keys: KeyPair, signed: tuple[str, Template]
) -> None:
    """XSW: the original signature (Reference #original) inside an assertion with a new ID."""
    xml, _template = signed
    root = tree(xml)
    original = root.find("saml:Assertion", NS)
    evil = copy.deepcopy(original)
    evil.set("ID", "_evil")
    evil.find(".//saml:AttributeValue", NS).text = "SE2120001355-E0005"
    original.addprevious(evil)
    extensions = etree.Element(f"{{{NS['samlp']}}}Extensions")
    root.find("saml:Issuer", NS).addnext(extensions)
    extensions.append(original)
    wrapped = serialise(root)
    with pytest.raises(SignatureError, match="does not point at #_evil"):
        backend.validate_signature(wrapped, str(idp_keys.cert), "pem", ASSERTION, "_evil")


def test_signature_not_enveloped_by_the_element_is_refused(
    backend: XmlSecBackend, idp_keys: KeyPair, signed: tuple[str, Template]
) -> None:
    """The Assertion's signature lifted into the Response: the Assertion has none of its own."""
    xml, template = signed
    root = tree(xml)
    assertion = root.find("saml:Assertion", NS)
    signature = assertion.find("ds:Signature", NS)
    root.find("ds:Signature", NS).addnext(signature)
    with pytest.raises(SignatureError, match="0 ds:Signature"):
        backend.validate_signature(
            serialise(root), str(idp_keys.cert), "pem", ASSERTION, template.assertion_id
        )


def test_xml_id_with_the_same_value_is_refused(
    backend: XmlSecBackend, idp_keys: KeyPair, signed: tuple[str, Template]
) -> None:
    """libxml2 makes every xml:id an ID by itself: one equal to ours is a second target."""
    xml, template = signed
    root = tree(xml)
    decoy = etree.SubElement(root, f"{{{NS['samlp']}}}Extensions")
    decoy.set("{http://www.w3.org/XML/1998/namespace}id", template.assertion_id)
    with pytest.raises(SignatureError, match="carried by 2"):
        backend.validate_signature(
            serialise(root), str(idp_keys.cert), "pem", ASSERTION, template.assertion_id
        )


@pytest.mark.parametrize(
    "doctype",
    [
        "<!DOCTYPE Response [<!ATTLIST Assertion ID ID #IMPLIED>]>",
        '<!DOCTYPE Response [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>',
        '<!DOCTYPE Response SYSTEM "http://attacker.example.test/saml.dtd">',
    ],
    ids=["attlist", "xxe", "laughs", "external"],
)
def test_dtd_laden_document_is_refused(
    backend: XmlSecBackend, idp_keys: KeyPair, signed: tuple[str, Template], doctype: str
) -> None:
    xml, template = signed
    declaration, _, rest = xml.partition("?>")
    laden = f"{declaration}?>\n{doctype}{rest}"
    with pytest.raises(SignatureError, match="DTD"):
        backend.validate_signature(
            laden, str(idp_keys.cert), "pem", ASSERTION, template.assertion_id
        )
    with pytest.raises(SignatureError, match="DTD"):
        backend.sign_statement(laden, ASSERTION, str(idp_keys.key), template.assertion_id)


@pytest.mark.parametrize(
    ("sign_alg", "digest_alg"),
    [(RSA_SHA1, SHA1), (RSA_SHA1, SHA256), (RSA_SHA256, SHA1)],
    ids=["rsa-sha1/sha1", "rsa-sha1/sha256", "rsa-sha256/sha1"],
)
def test_sha1_is_refused(
    backend: XmlSecBackend,
    xmlsec1: CryptoBackendXmlSec1,
    idp_keys: KeyPair,
    tmp_path: Path,
    sign_alg: str,
    digest_alg: str,
) -> None:
    template = make_template(idp_keys, sign_alg, digest_alg)
    signed_sha1 = sign_both(xmlsec1, template, idp_keys.key)
    # A valid signature as far as the xmlsec1 program is concerned ...
    result = run_xmlsec1_verify(
        signed_sha1, idp_keys.cert, ASSERTION, template.assertion_id, tmp_path
    )
    assert result.returncode == 0, result.stderr
    # ... and refused here, for its algorithm.
    with pytest.raises(SignatureError, match="refused"):
        backend.validate_signature(
            signed_sha1, str(idp_keys.cert), "pem", ASSERTION, template.assertion_id
        )
    with pytest.raises(SignatureError, match="refused"):
        backend.sign_statement(template.xml, ASSERTION, str(idp_keys.key), template.assertion_id)


def test_algorithm_naming_another_key_type_is_refused(
    backend: XmlSecBackend, idp_keys: KeyPair, ec_keys: KeyPair, signed: tuple[str, Template]
) -> None:
    xml, template = signed
    # An RSA signature relabelled as ECDSA, checked against an RSA certificate ...
    relabelled = xml.replace(RSA_SHA256, ECDSA_SHA256)
    with pytest.raises(SignatureError, match="needs an EC key"):
        backend.validate_signature(
            relabelled, str(idp_keys.cert), "pem", ASSERTION, template.assertion_id
        )
    # ... or HMAC, keyed with whatever an attacker hopes the certificate becomes.
    with pytest.raises(SignatureError, match="refused"):
        backend.validate_signature(
            xml.replace(RSA_SHA256, HMAC_SHA256),
            str(idp_keys.cert),
            "pem",
            ASSERTION,
            template.assertion_id,
        )
    # Signing: an ECDSA template with the RSA key, an RSA template with the EC key.
    ecdsa_template = make_template(idp_keys, ECDSA_SHA256)
    with pytest.raises(SignatureError, match="needs an EC key"):
        backend.sign_statement(
            ecdsa_template.xml, RESPONSE, str(idp_keys.key), ecdsa_template.response_id
        )
    rsa_template = make_template(ec_keys, RSA_SHA256)
    with pytest.raises(SignatureError, match="needs an RSA key"):
        backend.sign_statement(
            rsa_template.xml, ASSERTION, str(ec_keys.key), rsa_template.assertion_id
        )


# --- keys and threads -------------------------------------------------------------------------


def test_private_key_is_loaded_once_and_reloaded_when_the_file_changes(
    idp_keys: KeyPair, other_keys: KeyPair, tmp_path: Path
) -> None:
    backend = XmlSecBackend(XMLSEC1)
    key_file = tmp_path / "signing.key.pem"
    key_file.write_bytes(idp_keys.key.read_bytes())
    first = backend.private_key(str(key_file))
    assert backend.private_key(str(key_file)) is first
    key_file.write_bytes(other_keys.key.read_bytes())
    later = os.stat(key_file).st_mtime_ns + 1_000_000_000
    os.utime(key_file, ns=(later, later))
    assert backend.private_key(str(key_file)) is not first


def test_concurrent_signing_and_verification(backend: XmlSecBackend, idp_keys: KeyPair) -> None:
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                template = make_template(idp_keys)
                xml = sign_both(backend, template, idp_keys.key)
                for node_name, node_id in (
                    (RESPONSE, template.response_id),
                    (ASSERTION, template.assertion_id),
                ):
                    backend.validate_signature(xml, str(idp_keys.cert), "pem", node_name, node_id)
        except BaseException as exc:  # collected and re-raised in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures


# --- the IdP's pysaml2 Server -----------------------------------------------------------------


@dataclass
class IdpWithSp:
    provider: SamlIdentityProvider
    sp: ServiceProvider
    work: Path


@pytest.fixture(scope="module")
def idp_with_sp(test_pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> IdpWithSp:
    work = tmp_path_factory.mktemp("backend-idp")
    provider, sps = in_process_idp(
        work, test_pki.directory, {"https://sp.example.test/metadata": {}}
    )
    return IdpWithSp(provider, *sps.values(), work)


@pytest.fixture
def no_xmlsec1_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail if pysaml2 starts a process (it only ever starts xmlsec1)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"pysaml2 started a process: {args}")

    monkeypatch.setattr("saml2.sigver.Popen", refuse)
    yield


def request_info(sp: ServiceProvider, request_id: str = "_request-1") -> AuthnRequestInfo:
    return AuthnRequestInfo(request_id, sp.entity_id, sp.acs_url, "", False, False)


def test_idp_server_signs_and_verifies_with_the_backend(idp_with_sp: IdpWithSp) -> None:
    server = idp_with_sp.provider.server()
    assert server.sec.crypto is shared_backend(XMLSEC1)
    # The metadata store has its own security context: it must use the backend too.
    assert server.metadata.security.crypto is shared_backend(XMLSEC1)
    assert server.config.metadata is server.metadata


def test_idp_metadata_store_verifies_in_process(
    idp_with_sp: IdpWithSp, idp_keys: KeyPair, no_xmlsec1_process: None
) -> None:
    """The metadata store's own security context (signed metadata sources) is in-process."""
    from saml2 import md

    security = idp_with_sp.provider.server().metadata.security
    descriptor = md.EntityDescriptor(entity_id="https://sp.example.test/metadata", id=sid())
    descriptor.signature = pre_signature_part(
        descriptor.id, idp_keys.cert_text, 1, sign_alg=RSA_SHA256, digest_alg=SHA256
    )
    signed_xml = security.sign_statement(str(descriptor), ENTITY_DESCRIPTOR, key_file=None)
    cert = str(idp_keys.cert)
    assert security.verify_signature(signed_xml, cert_file=cert, node_name=ENTITY_DESCRIPTOR)
    tampered = signed_xml.replace("sp.example.test", "evil.example.test")
    with pytest.raises(SignatureError):
        security.verify_signature(tampered, cert_file=cert, node_name=ENTITY_DESCRIPTOR)


def test_idp_response_is_built_without_xmlsec1_and_verifies_with_it(
    idp_with_sp: IdpWithSp, test_pki: TestPki, no_xmlsec1_process: None
) -> None:
    xml = idp_with_sp.provider.build_authn_response(request_info(idp_with_sp.sp), anna()).xml
    root = etree.fromstring(xml)
    assertion = root.find("saml:Assertion", NS)
    assert root.find("ds:Signature", NS) is not None
    assert assertion.find("ds:Signature", NS) is not None
    # The xmlsec1 program (run directly, not through pysaml2) accepts both signatures.
    for node_name, node_id in ((RESPONSE, root.get("ID")), (ASSERTION, assertion.get("ID"))):
        result = run_xmlsec1_verify(
            xml, test_pki.idp_signing_cert, node_name, node_id, idp_with_sp.work
        )
        assert result.returncode == 0, result.stderr


def test_idp_response_is_accepted_by_an_independent_sp(idp_with_sp: IdpWithSp) -> None:
    """pysaml2 as an SP, checking with the xmlsec1 program against the IdP's metadata."""
    sp = idp_with_sp.sp
    built = idp_with_sp.provider.build_authn_response(request_info(sp, "_r2"), anna())
    parsed = sp.parse(built.encoded, "_r2")
    assert parsed.ava["http://sambi.se/attributes/1/employeeHsaId"] == ["SE2120001355-E0001"]


def test_idp_error_response_is_signed_in_process(
    idp_with_sp: IdpWithSp, test_pki: TestPki, no_xmlsec1_process: None
) -> None:
    xml = idp_with_sp.provider.build_error_response(
        request_info(idp_with_sp.sp), NO_PASSIVE, "no session"
    ).xml
    backend = shared_backend(XMLSEC1)
    assert backend.validate_signature(
        xml, str(test_pki.idp_signing_cert), "pem", RESPONSE, etree.fromstring(xml).get("ID")
    )


def test_idp_checks_post_request_signatures_in_process(
    idp_with_sp: IdpWithSp, no_xmlsec1_process: None
) -> None:
    provider, sp = idp_with_sp.provider, idp_with_sp.sp
    _sso, form, request_id = _post_form(sp)
    info, described = provider.parse_authn_request(
        BINDING_HTTP_POST, BindingMessage("SAMLRequest", form["SAMLRequest"], form["RelayState"])
    )
    assert info.request_id == request_id and described.entity_id == sp.entity_id
    _sso, form, _ = _post_form(sp)
    xml = base64.b64decode(form["SAMLRequest"]).decode("utf-8")
    tampered = re.sub(r"(<\w+:AuthnRequest )", r'\1ForceAuthn="true" ', xml, count=1)
    assert tampered != xml
    with pytest.raises(SamlRequestRejected) as refused:
        provider.parse_authn_request(
            BINDING_HTTP_POST,
            BindingMessage("SAMLRequest", base64.b64encode(tampered.encode()).decode(), "state"),
        )
    assert refused.value.reason == "bad_signature"


def _post_form(sp: ServiceProvider) -> tuple[str, dict[str, str], str]:
    # The SP signs with the xmlsec1 program; only the IdP side must stay in-process.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("saml2.sigver.Popen", subprocess.Popen)
        return sp.post_login_form()


def sp_with_backend(sp: ServiceProvider) -> Saml2Client:
    """A second client on the SP's configuration that verifies with the backend."""
    client = Saml2Client(sp.client.config)
    client.sec.crypto = shared_backend(XMLSEC1)
    return client


def parse_with_backend(sp: ServiceProvider, xml: bytes, request_id: str):
    client = sp_with_backend(sp)
    return client.parse_authn_request_response(
        base64.b64encode(xml).decode(), BINDING_HTTP_POST, outstanding={request_id: "/"}
    )


def test_sp_side_pysaml2_checks_still_run_with_the_backend(idp_with_sp: IdpWithSp) -> None:
    """pysaml2's SecurityContext wrapping defences run around the backend, in an SP as well."""
    sp, provider = idp_with_sp.sp, idp_with_sp.provider
    xml = provider.build_authn_response(request_info(sp, "_r3"), anna()).xml
    parsed = parse_with_backend(sp, xml, "_r3")
    assert parsed.ava["http://sambi.se/attributes/1/employeeHsaId"] == ["SE2120001355-E0001"]

    tampered = xml.replace(b"SE2120001355-E0001", b"SE2120001355-E0005")
    with pytest.raises(SignatureError):
        parse_with_backend(sp, tampered, "_r3")

    # XSW1: a new Response around the original's signature, the original inside ds:Object.
    root = etree.fromstring(xml)
    evil = copy.deepcopy(root)
    evil.set("ID", "_evil-response")
    for value in evil.iterfind(".//saml:AttributeValue", NS):
        if value.text == "SE2120001355-E0001":
            value.text = "SE2120001355-E0005"
    evil_signature = evil.find("ds:Signature", NS)
    holder = etree.SubElement(evil_signature, f"{{{NS['ds']}}}Object")
    holder.append(root)
    with pytest.raises(SignatureError):
        parse_with_backend(sp, etree.tostring(evil), "_r3")

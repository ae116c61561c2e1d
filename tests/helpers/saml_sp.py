"""An independent SAML SP for tests: pysaml2 only, no code from ``idp`` or ``sp_demo``.

It is configured from the IdP's published metadata and its own key, exactly as an integrator's
SP would be, and it verifies every Response the way pysaml2 does for any IdP.
"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string

from idp.authn import Authentication
from idp.config import Settings
from idp.federation.idp_metadata import idp_metadata_xml
from idp.saml.server import SamlIdentityProvider
from tests.helpers.certificates import make_self_signed
from tests.helpers.support import tls_context

URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
SAMBI_ATTRIBUTES = (
    "http://sambi.se/attributes/1/employeeHsaId",
    "http://sambi.se/attributes/1/givenName",
    "http://sambi.se/attributes/1/surname",
)
EID_ATTRIBUTES = ("urn:oid:1.2.752.29.6.2.1", "urn:oid:2.16.840.1.113730.3.1.241")
MD_NS = "urn:oasis:names:tc:SAML:2.0:metadata"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XENC11_NS = "http://www.w3.org/2009/xmlenc11#"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"


@dataclass
class TestServiceProvider:
    entity_id: str
    acs_url: str
    client: Saml2Client
    metadata_xml: str
    # The SP's decryption key and certificate (PEM files) when it publishes an encryption key.
    encryption_key: Path | None = None
    encryption_cert: Path | None = None

    def login_url(
        self,
        *,
        force_authn: bool = False,
        is_passive: bool = False,
        relay_state: str = "state-1",
        acs_url: str | None = None,
        sign: bool = True,
    ) -> tuple[str, str]:
        """A redirect-binding login URL to the IdP and the request ID it carries."""
        kwargs: dict = {}
        if force_authn:
            kwargs["force_authn"] = "true"
        if is_passive:
            kwargs["is_passive"] = "true"
        request_id, info = self.client.prepare_for_authenticate(
            relay_state=relay_state,
            binding=BINDING_HTTP_REDIRECT,
            assertion_consumer_service_url=acs_url or self.acs_url,
            sign=sign,
            sigalg=RSA_SHA256 if sign else None,
            digest_alg=SHA256,
            **kwargs,
        )
        location = dict(info["headers"])["Location"]
        return location, request_id

    def post_login_form(self, *, sign: bool = True) -> tuple[str, dict[str, str], str]:
        """An HTTP-POST binding AuthnRequest: (SSO URL, form fields, request ID)."""
        sso = self.client.metadata.single_sign_on_service(
            next(iter(self.client.metadata.identity_providers())), BINDING_HTTP_POST
        )[0]["location"]
        request_id, request = self.client.create_authn_request(
            sso,
            binding=BINDING_HTTP_POST,
            sign=sign,
            sign_alg=RSA_SHA256,
            digest_alg=SHA256,
        )
        import base64

        encoded = base64.b64encode(str(request).encode()).decode()
        return sso, {"SAMLRequest": encoded, "RelayState": "post-state"}, request_id

    def parse(self, saml_response: str, request_id: str):
        return self.client.parse_authn_request_response(
            saml_response, BINDING_HTTP_POST, outstanding={request_id: "/"}
        )


def make_service_provider(
    directory: Path,
    *,
    entity_id: str,
    idp_metadata_file: Path,
    attributes: tuple[str, ...] = SAMBI_ATTRIBUTES,
    sign_requests: bool = True,
    encryption: bool = False,
    encryption_methods: tuple[tuple[str, str | None, str | None], ...] = (),
    encryption_key_bits: int = 2048,
    acs_url: str | None = None,
) -> TestServiceProvider:
    """A pysaml2 SP trusting ``idp_metadata_file``; its metadata is ``.metadata_xml``.

    ``encryption``: it publishes a separate key with ``use="encryption"`` (of
    ``encryption_key_bits``) and decrypts EncryptedAssertions with it; ``encryption_methods``
    ((Algorithm, DigestMethod, MGF) triples) go into that KeyDescriptor as its preferences.
    """
    directory.mkdir(parents=True, exist_ok=True)
    slug = urllib.parse.urlsplit(entity_id).hostname or "sp"
    key, cert = make_self_signed(directory, slug)
    acs_url = acs_url or f"{entity_id.rsplit('/', 1)[0]}/acs"
    encryption_key = encryption_cert = None
    extra: dict[str, Any] = {}
    if encryption:
        encryption_key, encryption_cert = make_self_signed(
            directory, f"{slug}-encryption", key_size=encryption_key_bits
        )
        extra["encryption_keypairs"] = [
            {"key_file": str(encryption_key), "cert_file": str(encryption_cert)}
        ]
    config = SPConfig()
    config.load(
        {
            "entityid": entity_id,
            "name": f"Test SP {slug}",
            "service": {
                "sp": {
                    "endpoints": {"assertion_consumer_service": [(acs_url, BINDING_HTTP_POST)]},
                    "authn_requests_signed": sign_requests,
                    "want_response_signed": True,
                    "want_assertions_signed": True,
                    "allow_unsolicited": False,
                    "required_attributes": list(attributes),
                    "requested_attribute_name_format": URI,
                }
            },
            "key_file": str(key),
            "cert_file": str(cert),
            "metadata": {"local": [str(idp_metadata_file)]},
            "xmlsec_binary": "/usr/bin/xmlsec1",
            "signing_algorithm": RSA_SHA256,
            "digest_algorithm": SHA256,
            "accepted_time_diff": 60,
            "allow_unknown_attributes": True,
            **extra,
        }
    )
    client = Saml2Client(config)
    metadata_xml = create_metadata_string(None, config=config, valid=24)
    if isinstance(metadata_xml, bytes):
        metadata_xml = metadata_xml.decode()
    if encryption_methods:
        metadata_xml = with_encryption_methods(metadata_xml, encryption_methods)
    return TestServiceProvider(
        entity_id, acs_url, client, metadata_xml, encryption_key, encryption_cert
    )


def with_encryption_methods(
    metadata_xml: str, methods: tuple[tuple[str, str | None, str | None], ...]
) -> str:
    """The metadata with ``md:EncryptionMethod`` elements in its encryption KeyDescriptor."""
    root = etree.fromstring(metadata_xml.encode())
    (descriptor,) = root.iterfind(f".//{{{MD_NS}}}KeyDescriptor[@use='encryption']")
    for algorithm, digest, mgf in methods:
        method = etree.SubElement(descriptor, f"{{{MD_NS}}}EncryptionMethod")
        method.set("Algorithm", algorithm)
        if digest:
            etree.SubElement(method, f"{{{DS_NS}}}DigestMethod").set("Algorithm", digest)
        if mgf:
            etree.SubElement(method, f"{{{XENC11_NS}}}MGF").set("Algorithm", mgf)
    return etree.tostring(root, encoding="unicode")


def in_process_idp(
    work: Path, pki_dir: Path, service_providers: dict[str, dict[str, object]]
) -> tuple[SamlIdentityProvider, dict[str, TestServiceProvider]]:
    """A :class:`SamlIdentityProvider` (no server) on ``pki_dir`` and an SP for each entry of
    ``service_providers`` (entity ID → :func:`make_service_provider` keywords), each trusting
    the IdP's metadata and registered in the IdP's metadata directory."""
    metadata_dir = work / "sp-metadata"
    metadata_dir.mkdir(parents=True)
    settings = Settings(
        var_dir=work / "var",
        pki_dir=pki_dir,
        sp_metadata_dir=metadata_dir,
        base_url="https://idp.example.test",
    )
    provider = SamlIdentityProvider(settings, b"pairwise secret of an in-process test IdP")
    idp_metadata = work / "idp-metadata.xml"
    idp_metadata.write_text(idp_metadata_xml(provider), encoding="utf-8")
    made = {
        entity_id: registered_service_provider(
            work / f"sp-{number}", entity_id, idp_metadata, metadata_dir, **options
        )
        for number, (entity_id, options) in enumerate(service_providers.items())
    }
    return provider, made


def registered_service_provider(
    directory: Path,
    entity_id: str,
    idp_metadata_file: Path,
    sp_metadata_dir: Path,
    **options: Any,
) -> TestServiceProvider:
    """:func:`make_service_provider` in ``directory``, with its metadata put into the IdP's
    SP metadata directory (as ``<directory name>.xml``)."""
    sp = make_service_provider(
        directory, entity_id=entity_id, idp_metadata_file=idp_metadata_file, **options
    )
    (sp_metadata_dir / f"{directory.name}.xml").write_text(sp.metadata_xml, encoding="utf-8")
    return sp


def sp_of_running_idp(
    work: Path, base_url: str, ca_file: Path, sp_metadata_dir: Path
) -> TestServiceProvider:
    """An SP (https://sp.example.test/metadata) trusting the metadata a running IdP serves at
    ``base_url``, and registered in that IdP's SP metadata directory."""
    answer = httpx.get(f"{base_url}/saml/metadata", verify=tls_context(ca_file), timeout=30)
    assert answer.status_code == 200, answer.text
    idp_metadata_file = work / "idp-metadata.xml"
    idp_metadata_file.write_text(answer.text, encoding="utf-8")
    return registered_service_provider(
        work / "sp", "https://sp.example.test/metadata", idp_metadata_file, sp_metadata_dir
    )


def anna(hsa_id: str = "SE2120001355-E0001", given_name: str = "Anna") -> Authentication:
    """A synthetic card login of Anna Andersson (or another HSA-ID or given name), 30 s ago."""
    return Authentication(
        hsa_id=hsa_id,
        given_name=given_name,
        surname="Andersson",
        title="Handläggare",
        organisation="Göteborgs Stad",
        mail="anna.andersson@example.invalid",
        method="siths-this-device",
        certificate_fingerprint="00",
        authn_instant=int(time.time()) - 30,
    )

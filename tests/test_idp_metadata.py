"""The session IdP's published metadata: complete, signed in-process, and `idp metadata validate`
passes on it when fetched over HTTPS and checked against the IdP's signing certificate."""

from __future__ import annotations

import httpx
from defusedxml import ElementTree

from tests.conftest import IdpUnderTest
from tests.helpers.support import VENV_BIN, run_cli, tls_context

MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
ALG = "{urn:oasis:names:tc:SAML:metadata:algsupport}"
MDATTR = "{urn:oasis:names:tc:SAML:metadata:attribute}"
MDUI = "{urn:oasis:names:tc:SAML:metadata:ui}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"


def test_idp_metadata_is_complete(idp: IdpUnderTest) -> None:
    response = httpx.get(f"{idp.base_url}/saml/metadata", verify=tls_context(idp.ca_file))
    root = ElementTree.fromstring(response.content)
    assert root.get("validUntil") and root.get("cacheDuration") == "PT3600S"
    idpsso = root.find(f"{MD}IDPSSODescriptor")
    assert idpsso is not None
    ui = {
        (element.tag, element.get("{http://www.w3.org/XML/1998/namespace}lang"))
        for element in idpsso.iter()
        if element.tag in (f"{MDUI}DisplayName", f"{MDUI}Description")
    }
    assert ui == {
        (tag, lang) for tag in (f"{MDUI}DisplayName", f"{MDUI}Description") for lang in ("sv", "en")
    }
    assert root.find(f"{MD}Organization") is not None
    assert root.find(f"{MD}ContactPerson") is not None
    bindings = {
        (element.tag, element.get("Binding"))
        for element in idpsso
        if element.tag in (f"{MD}SingleSignOnService", f"{MD}SingleLogoutService")
    }
    assert len(bindings) == 4
    assert {e.text for e in idpsso.findall(f"{MD}NameIDFormat")} == {
        "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
        "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    }
    loa = [
        value.text
        for attribute in root.iter(f"{SAML}Attribute")
        if attribute.get("Name") == "urn:oasis:names:tc:SAML:attribute:assurance-certification"
        for value in attribute.findall(f"{SAML}AttributeValue")
    ]
    assert loa == ["http://id.sambi.se/loa/loa3", "http://id.elegnamnden.se/loa/1.0/loa3"]
    algorithms = [
        element.get("Algorithm") or ""
        for element in root.iter()
        if element.tag in (f"{ALG}DigestMethod", f"{ALG}SigningMethod")
    ]
    assert algorithms and not [a for a in algorithms if "md5" in a or "sha1" in a]
    assert len(idpsso.findall(f"{MD}KeyDescriptor")) == 1  # no rollover under way


def test_validate_passes_on_the_idp_metadata_over_https(idp: IdpUnderTest) -> None:
    result = run_cli(
        [
            str(VENV_BIN / "idp"),
            "metadata",
            "validate",
            f"{idp.base_url}/saml/metadata",
            "--ca-file",
            str(idp.ca_file),
            "--federation-cert",
            str(idp.pki.idp_signing_cert),
        ],
        {},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS signature: signed, verified with saml-signing.crt.pem" in result.stdout
    # With the next key pinned instead, the signature check fails and says so.
    wrong = run_cli(
        [
            str(VENV_BIN / "idp"),
            "metadata",
            "validate",
            f"{idp.base_url}/saml/metadata",
            "--ca-file",
            str(idp.ca_file),
            "--federation-cert",
            str(idp.pki.idp_next_signing_cert),
        ],
        {},
    )
    assert wrong.returncode == 1
    assert "FAIL signature: not verified with saml-signing-next.crt.pem" in wrong.stdout

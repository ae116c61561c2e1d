"""``idp metadata validate`` and the running IdP take the same decision on every SP's ACS.

One rule (idp/saml/acs.py) and one setting (``IDP_ALLOW_HTTP_LOOPBACK_ACS``): https
always; http only for 127.0.0.1, localhost and [::1], and only with the setting. The same SP
metadata files go through the validator and through the IdP's AuthnRequest handling, with the
setting off and on, and the decisions are compared file by file; the remote aggregate loader's
per-entity check (`entity_problems`) must agree too.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest
from saml2 import BINDING_HTTP_REDIRECT

from idp.config import Settings
from idp.federation.checks import entity_problems, validate_metadata
from idp.federation.document import entity_descriptors, parse_metadata
from idp.federation.idp_metadata import idp_metadata_xml
from idp.saml.bindings import read_redirect_query
from idp.saml.server import SamlIdentityProvider, SamlRequestRejected
from siths_testkit.pki import TestPki
from tests.helpers.saml_sp import TestServiceProvider as ServiceProvider
from tests.helpers.saml_sp import registered_service_provider
from tests.helpers.support import VENV_BIN, run_cli

# name → (ACS locations in the SP's metadata; usable without the setting, with it)
CASES: dict[str, tuple[tuple[str, ...], bool, bool]] = {
    "https": (("https://https.example.test/acs",), True, True),
    "http": (("http://http.example.test/acs",), False, False),
    "http-127": (("http://127.0.0.1:8080/acs",), False, True),
    "http-localhost": (("http://localhost:8080/saml/acs",), False, True),
    "http-ipv6-loopback": (("http://[::1]:8080/acs",), False, True),
    # Loopback in fact, but not one of the three names the setting allows.
    "http-127-0-0-2": (("http://127.0.0.2/acs",), False, False),
    # One bad ACS spoils the SP, for the validator and the aggregate loader alike.
    "https-and-http": (
        ("https://mixed.example.test/acs", "http://mixed.example.test/acs"),
        False,
        False,
    ),
}


@dataclass
class Federation:
    metadata_dir: Path
    sps: dict[str, ServiceProvider]
    idps: dict[bool, SamlIdentityProvider]  # by allow_http_loopback_acs


@pytest.fixture(scope="module")
def federation(test_pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> Federation:
    work = tmp_path_factory.mktemp("acs-agreement")
    metadata_dir = work / "sp-metadata"
    metadata_dir.mkdir()
    idps = {
        allow: SamlIdentityProvider(
            Settings(
                var_dir=work / f"var-{allow}",
                pki_dir=test_pki.directory,
                sp_metadata_dir=metadata_dir,
                base_url="https://idp.example.test",
                allow_http_loopback_acs=allow,
            ),
            b"pairwise secret",
        )
        for allow in (False, True)
    }
    idp_metadata = work / "idp-metadata.xml"
    idp_metadata.write_text(idp_metadata_xml(idps[False]), encoding="utf-8")
    sps = {}
    for name, (locations, _without, _with) in CASES.items():
        sp = registered_service_provider(
            work / name,
            f"https://{name}.example.test/sp",
            idp_metadata,
            metadata_dir,
            acs_url=locations[0],
        )
        if len(locations) > 1:
            # pysaml2 writes one ACS; add the others as further HTTP-POST endpoints.
            path = metadata_dir / f"{name}.xml"
            xml = path.read_text(encoding="utf-8")
            first = f'Location="{locations[0]}" index="1" />'
            assert first in xml
            extra = "".join(
                f'<ns0:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:'
                f'HTTP-POST" Location="{location}" index="{number}" />'
                for number, location in enumerate(locations[1:], start=2)
            )
            path.write_text(xml.replace(first, first + extra), encoding="utf-8")
        sps[name] = sp
    return Federation(metadata_dir, sps, idps)


def runtime_accepts(idp: SamlIdentityProvider, sp: ServiceProvider) -> tuple[bool, str]:
    """Whether the IdP takes a signed AuthnRequest from ``sp`` for its first ACS."""
    url, _request_id = sp.login_url()
    try:
        idp.parse_authn_request(
            BINDING_HTTP_REDIRECT, read_redirect_query(urllib.parse.urlsplit(url).query)
        )
    except SamlRequestRejected as exc:
        return False, f"{exc.reason}: {exc.detail}"
    return True, ""


@pytest.mark.parametrize("allow", [False, True], ids=["default", "loopback-allowed"])
@pytest.mark.parametrize("name", list(CASES))
def test_validator_and_runtime_decide_alike(federation: Federation, name: str, allow: bool) -> None:
    _locations, usable_without, usable_with = CASES[name]
    expected = usable_with if allow else usable_without
    path = federation.metadata_dir / f"{name}.xml"

    report = validate_metadata(str(path), allow_http_loopback_acs=allow)
    acs_check = next(check for check in report.checks if check.name == "acs")
    accepted, why = runtime_accepts(federation.idps[allow], federation.sps[name])

    assert acs_check.passed is accepted is expected, (acs_check.detail, why)
    # The remote aggregate loader trusts the entity on the same terms.
    (entity,) = entity_descriptors(parse_metadata(path.read_bytes()))
    trusted = not entity_problems(entity, dt.datetime.now(dt.UTC), allow_http_loopback_acs=allow)
    assert trusted is expected
    # The SP's metadata is otherwise fine: the ACS alone decides, for both.
    assert report.ok is expected, [check.line() for check in report.failed()]
    if not expected:
        assert why.startswith("insecure_acs: ")
        # The same words, from the same rule.
        assert why.removeprefix("insecure_acs: ") == acs_check.detail


@pytest.mark.parametrize("allow", [False, True], ids=["default", "loopback-allowed"])
def test_the_cli_reads_the_one_setting(federation: Federation, allow: bool) -> None:
    environment = {"IDP_ALLOW_HTTP_LOOPBACK_ACS": "true" if allow else "false"}
    result = run_cli(
        [
            str(VENV_BIN / "idp"),
            "metadata",
            "validate",
            str(federation.metadata_dir / "http-localhost.xml"),
        ],
        environment,
    )
    assert result.returncode == (0 if allow else 1), result.stdout + result.stderr
    acs_line = next(line for line in result.stdout.splitlines() if " acs " in line)
    assert acs_line.startswith("PASS" if allow else "FAIL")
    if not allow:
        assert "IDP_ALLOW_HTTP_LOOPBACK_ACS=true" in acs_line

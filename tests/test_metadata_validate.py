"""`idp metadata validate`: the demo SP's metadata passes; every broken variant fails, saying why.

The command runs as a real subprocess for the cases an integrator would type; the rest call
:func:`idp.federation.checks.validate_metadata`, which the command prints line by line.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from idp.federation.aggregate import build_aggregate
from idp.federation.checks import Report, validate_metadata
from siths_testkit.pki import TestPki
from tests.helpers.certificates import make_certificate
from tests.helpers.metadata_support import demo_sp_metadata, with_certificate, with_entity_id
from tests.helpers.support import VENV_BIN, run_cli


@pytest.fixture(scope="module")
def demo_xml(test_pki: TestPki) -> str:
    return demo_sp_metadata(test_pki.directory)


def _validate(tmp_path: Path, xml: str | bytes, **kwargs: object) -> Report:
    path = tmp_path / "metadata.xml"
    path.write_bytes(xml.encode("utf-8") if isinstance(xml, str) else xml)
    return validate_metadata(str(path), **kwargs)  # type: ignore[arg-type]


def _failed(report: Report) -> dict[str, str]:
    return {check.name: check.detail for check in report.failed()}


def test_demo_sp_metadata_passes_on_the_command_line(tmp_path: Path, demo_xml: str) -> None:
    path = tmp_path / "treserva.xml"
    path.write_text(demo_xml, encoding="utf-8")
    result = run_cli([str(VENV_BIN / "idp"), "metadata", "validate", str(path)], {})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for name in ("document", "schema", "signature", "validUntil", "entity-id", "acs"):
        assert any(line.startswith(f"PASS {name}") for line in lines), (name, lines)
    assert any(line.startswith("PASS certificates") for line in lines)
    assert any(line.startswith("PASS requested-attributes") for line in lines)
    assert not any(line.startswith("FAIL") for line in lines)


def test_json_output_and_exit_code_on_failure(tmp_path: Path, demo_xml: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(demo_xml.replace("https://localhost:8445/saml/acs", "http://x/acs"), "utf-8")
    result = run_cli([str(VENV_BIN / "idp"), "metadata", "validate", "--json", str(path)], {})
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    failed = [check for check in report["checks"] if not check["passed"]]
    assert [check["name"] for check in failed] == ["acs"]
    assert "'http://x/acs' is not an https URL" in failed[0]["detail"]


def test_malformed_xml(tmp_path: Path, demo_xml: str) -> None:
    report = _validate(tmp_path, demo_xml[:-40])
    assert _failed(report)["document"].startswith("malformed_xml: not well-formed XML at line")


def test_xxe_is_refused(tmp_path: Path, demo_xml: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do-not-read", encoding="utf-8")
    xml = (
        f'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        + demo_xml.replace("Treserva (demo)</ns2:DisplayName>", "&xxe;</ns2:DisplayName>", 1)
    )
    report = _validate(tmp_path, xml)
    assert _failed(report) == {
        "document": "dtd_refused: the document has a DOCTYPE; DTDs and entities are refused (XXE)"
    }
    assert "do-not-read" not in json.dumps(report.to_json())


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    xml = (
        '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&lol2;"/>'
    )
    assert _failed(_validate(tmp_path, xml))["document"].startswith("dtd_refused")


def test_oversized_document(tmp_path: Path, demo_xml: str) -> None:
    path = tmp_path / "big.xml"
    path.write_text(demo_xml, encoding="utf-8")
    result = run_cli(
        [str(VENV_BIN / "idp"), "metadata", "validate", "--max-bytes", "1000", str(path)], {}
    )
    assert result.returncode == 1
    assert "FAIL document: too_large:" in result.stdout
    assert "larger than the limit of 1000 bytes" in result.stdout


def test_not_metadata(tmp_path: Path) -> None:
    report = _validate(tmp_path, "<html><body/></html>")
    assert _failed(report)["document"].startswith("not_metadata: the root element is html")


def test_schema_invalid(tmp_path: Path, demo_xml: str) -> None:
    report = _validate(tmp_path, demo_xml.replace('index="1"', 'index="first"', 1))
    detail = _failed(report)["schema"]
    assert "AssertionConsumerService" in detail and "first" in detail


def test_expired_sp_certificate(tmp_path: Path, demo_xml: str) -> None:
    _key, _cert, expired = make_certificate(tmp_path, "expired", not_after=-dt.timedelta(days=2))
    failed = _failed(_validate(tmp_path, with_certificate(demo_xml, expired)))
    assert list(failed) == ["certificates"]
    assert "CN=expired expired " in failed["certificates"]


def test_weak_key_certificate(tmp_path: Path, demo_xml: str) -> None:
    # (A SHA-1-signed certificate is refused the same way, but this OpenSSL will not make one.)
    _key, _cert, weak = make_certificate(tmp_path, "weak", key_size=1024)
    detail = _failed(_validate(tmp_path, with_certificate(demo_xml, weak)))["certificates"]
    assert detail.startswith("CN=weak has a 1024-bit RSA key (minimum 2048)")


def test_entity_id_must_be_https_or_urn(tmp_path: Path, demo_xml: str) -> None:
    failed = _failed(_validate(tmp_path, with_entity_id(demo_xml, "http://sp.example.test/md")))
    assert failed == {"entity-id": "'http://sp.example.test/md' is neither an https URL nor a urn"}


def test_acs_must_be_http_post(tmp_path: Path, demo_xml: str) -> None:
    xml = demo_xml.replace(
        'Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://localhost:8445'
        '/saml/acs"',
        'Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact" Location="https://localhost'
        ':8445/saml/acs"',
    )
    failed = _failed(_validate(tmp_path, xml))
    assert failed == {"acs": "no AssertionConsumerService with the HTTP-POST binding"}


def test_unknown_requested_attribute(tmp_path: Path, demo_xml: str) -> None:
    xml = demo_xml.replace("http://sambi.se/attributes/1/surname", "urn:oid:1.2.752.29.4.13", 1)
    failed = _failed(_validate(tmp_path, xml))
    assert failed == {"requested-attributes": "the IdP does not release: urn:oid:1.2.752.29.4.13"}


def test_expired_valid_until(tmp_path: Path, demo_xml: str) -> None:
    xml = demo_xml.replace(' entityID="', ' validUntil="2020-01-01T00:00:00Z" entityID="', 1)
    failed = _failed(_validate(tmp_path, xml))
    assert failed == {
        "validUntil": "https://localhost:8445/saml/metadata expired at 2020-01-01T00:00:00Z"
    }


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory, demo_xml: str) -> dict[str, Path]:
    """A federation key, another key, and a directory holding two good SPs."""
    work = tmp_path_factory.mktemp("federation")
    key, cert, _ = make_certificate(work / "keys", "federation")
    other_key, other_cert, _ = make_certificate(work / "keys", "impostor")
    members = work / "members"
    members.mkdir()
    (members / "a.xml").write_text(demo_xml, encoding="utf-8")
    (members / "b.xml").write_text(
        with_entity_id(demo_xml, "https://b.example.test/md", acs_host="b.example.test"), "utf-8"
    )
    return {
        "key": key,
        "cert": cert,
        "other_key": other_key,
        "other_cert": other_cert,
        "members": members,
        "work": work,
    }


def _aggregate(
    federation: dict[str, Path], *, key: str = "key", cert: str = "cert", hours: float = 24
) -> bytes:
    return build_aggregate(
        sorted(federation["members"].glob("*.xml")),
        key_file=federation[key],
        cert_file=federation[cert],
        valid_until=dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours),
    )


def test_signed_aggregate_built_by_the_command_passes(federation: dict[str, Path]) -> None:
    out = federation["work"] / "aggregate.xml"
    built = run_cli(
        [
            str(VENV_BIN / "idp"),
            "metadata",
            "aggregate",
            str(federation["members"]),
            "--key",
            str(federation["key"]),
            "--cert",
            str(federation["cert"]),
            "--out",
            str(out),
        ],
        {},
    )
    assert built.returncode == 0, built.stderr
    result = run_cli(
        [
            str(VENV_BIN / "idp"),
            "metadata",
            "validate",
            str(out),
            "--federation-cert",
            str(federation["cert"]),
        ],
        {},
    )
    assert result.returncode == 0, result.stdout
    assert "PASS signature: signed, verified with federation.crt.pem" in result.stdout
    assert "PASS entity-ids-unique: 2 distinct entity IDs" in result.stdout


def test_unsigned_aggregate_with_federation_cert(
    tmp_path: Path, federation: dict[str, Path]
) -> None:
    signed = _aggregate(federation).decode()
    start = signed.index("<ds:Signature")
    unsigned = signed[:start] + signed[signed.index("</ds:Signature>") + 15 :]
    failed = _failed(_validate(tmp_path, unsigned, federation_cert=federation["cert"]))
    assert failed == {
        "signature": "not verified with federation.crt.pem: the document is not signed"
    }


def test_aggregate_signed_by_another_key(tmp_path: Path, federation: dict[str, Path]) -> None:
    signed = _aggregate(federation, key="other_key", cert="other_cert")
    failed = _failed(_validate(tmp_path, signed, federation_cert=federation["cert"]))
    assert list(failed) == ["signature"]
    assert failed["signature"].startswith("not verified with federation.crt.pem: the signature")


def test_tampered_aggregate(tmp_path: Path, federation: dict[str, Path]) -> None:
    signed = _aggregate(federation).replace(b"b.example.test/saml/acs", b"evil.example/saml/acs")
    failed = _failed(_validate(tmp_path, signed, federation_cert=federation["cert"]))
    assert list(failed) == ["signature"]
    # Without a pinned certificate the embedded one is tried, and the change still shows.
    assert "invalid" in _failed(_validate(tmp_path, signed))["signature"]


def test_expired_aggregate(tmp_path: Path, federation: dict[str, Path]) -> None:
    failed = _failed(
        _validate(tmp_path, _aggregate(federation, hours=-1), federation_cert=federation["cert"])
    )
    assert list(failed) == ["validUntil"]
    assert "EntitiesDescriptor expired at" in failed["validUntil"]


def test_duplicated_entity_ids(tmp_path: Path, federation: dict[str, Path], demo_xml: str) -> None:
    members = tmp_path / "members"
    members.mkdir()
    (members / "a.xml").write_text(demo_xml, encoding="utf-8")
    (members / "a-again.xml").write_text(demo_xml, encoding="utf-8")
    document = build_aggregate(
        sorted(members.glob("*.xml")),
        key_file=federation["key"],
        cert_file=federation["cert"],
        valid_until=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    failed = _failed(_validate(tmp_path, document, federation_cert=federation["cert"]))
    assert failed["entity-ids-unique"] == (
        "duplicated entity IDs: https://localhost:8445/saml/metadata"
    )


def test_entity_claiming_another_acs(
    tmp_path: Path, federation: dict[str, Path], demo_xml: str
) -> None:
    members = tmp_path / "members"
    members.mkdir()
    (members / "a.xml").write_text(demo_xml, encoding="utf-8")
    (members / "thief.xml").write_text(
        with_entity_id(demo_xml, "https://thief.example.test/md"), "utf-8"
    )
    document = build_aggregate(
        sorted(members.glob("*.xml")),
        key_file=federation["key"],
        cert_file=federation["cert"],
        valid_until=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    failed = _failed(_validate(tmp_path, document, federation_cert=federation["cert"]))
    assert failed == {
        "acs-unique": "ACS https://localhost:8445/saml/acs is claimed by "
        "https://localhost:8445/saml/metadata, https://thief.example.test/md"
    }

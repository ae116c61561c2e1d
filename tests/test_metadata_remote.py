"""SP metadata from a remote signed aggregate over real HTTPS: what is accepted, what is refused
(each with its reason), and that a refused fetch keeps the last good copy until its validUntil.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from idp.federation.aggregate import build_aggregate
from idp.federation.remote import RemoteAggregate
from siths_testkit.pki import TestPki
from tests.helpers.aggregate_server import AggregateServer, serve_aggregate
from tests.helpers.certificates import make_certificate
from tests.helpers.metadata_support import demo_sp_metadata, with_certificate, with_entity_id

A_ID = "https://localhost:8445/saml/metadata"
B_ID = "https://b.example.test/md"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("remote-keys")
    key, cert, _ = make_certificate(work, "federation")
    other_key, other_cert, _ = make_certificate(work, "impostor")
    return {"key": key, "cert": cert, "other_key": other_key, "other_cert": other_cert}


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory, test_pki: TestPki) -> dict[str, str]:
    demo = demo_sp_metadata(test_pki.directory)
    _key, _cert, expired = make_certificate(
        tmp_path_factory.mktemp("expired"), "expired", not_after=-dt.timedelta(days=1)
    )
    return {
        "a": demo,
        "b": with_entity_id(demo, B_ID, acs_host="b.example.test"),
        # Claims A's ACS (on localhost:8445, A's host) under another name.
        "thief": with_entity_id(demo, "https://thief.example.test/md"),
        "expired": with_certificate(
            with_entity_id(demo, "https://old.example.test/md", acs_host="old.example.test"),
            expired,
        ),
    }


@pytest.fixture
def server(test_pki: TestPki) -> Iterator[AggregateServer]:
    with serve_aggregate(test_pki.tls_server_cert, test_pki.tls_server_key) as running:
        yield running


def _aggregate(
    tmp_path: Path,
    keys: dict[str, Path],
    documents: list[str],
    *,
    hours: float = 1.0,
    signer: str = "",
) -> bytes:
    directory = tmp_path / f"members-{len(list(tmp_path.iterdir()))}"
    directory.mkdir()
    for number, text in enumerate(documents):
        (directory / f"{number:02d}.xml").write_text(text, encoding="utf-8")
    return build_aggregate(
        sorted(directory.glob("*.xml")),
        key_file=keys[f"{signer}key"],
        cert_file=keys[f"{signer}cert"],
        valid_until=dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours),
    )


def _source(
    tmp_path: Path, server: AggregateServer, keys: dict[str, Path], test_pki: TestPki
) -> RemoteAggregate:
    return RemoteAggregate(
        server.url,
        keys["cert"],
        tmp_path / "cache",
        verify=ssl.create_default_context(cafile=str(test_pki.tls_ca_cert)),
        max_bytes=200_000,
    )


def test_good_aggregate_is_accepted(
    tmp_path: Path,
    server: AggregateServer,
    keys: dict[str, Path],
    members: dict[str, str],
    test_pki: TestPki,
) -> None:
    server.document = _aggregate(tmp_path, keys, [members["a"], members["b"]])
    source = _source(tmp_path, server, keys, test_pki)
    assert source.refresh()
    assert source.accepted is not None and source.accepted.entity_ids == (A_ID, B_ID)
    assert source.metadata_files() == [str(tmp_path / "cache" / "accepted.xml")]
    # After its validUntil the copy is not used any more: its SPs are not trusted.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    assert source.metadata_files(now=later) == []
    # A restart starts from the copy accepted before.
    assert _source(tmp_path, server, keys, test_pki).accepted == source.accepted


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ("unsigned", "bad_signature: the document is not signed"),
        ("wrong_signer", "bad_signature: the signature of"),
        ("expired", "expired: the aggregate expired at"),
        ("older", "older_aggregate: validUntil"),
        ("malformed", "malformed_xml: not well-formed XML at line"),
        ("xxe", "dtd_refused:"),
        ("oversized", "too_large:"),
    ],
)
def test_bad_aggregate_is_refused_and_the_last_good_copy_kept(
    tmp_path: Path,
    server: AggregateServer,
    keys: dict[str, Path],
    members: dict[str, str],
    test_pki: TestPki,
    caplog: pytest.LogCaptureFixture,
    variant: str,
    reason: str,
) -> None:
    server.document = _aggregate(tmp_path, keys, [members["a"], members["b"]], hours=2)
    source = _source(tmp_path, server, keys, test_pki)
    assert source.refresh()
    good = source.accepted
    signed = _aggregate(tmp_path, keys, [members["a"]], hours=3)
    bad = {
        "unsigned": signed[: signed.index(b"<ds:Signature")]
        + signed[signed.index(b"</ds:Signature>") + 15 :],
        "wrong_signer": _aggregate(tmp_path, keys, [members["a"]], hours=3, signer="other_"),
        "expired": _aggregate(tmp_path, keys, [members["a"]], hours=-1),
        "older": _aggregate(tmp_path, keys, [members["a"]], hours=1),
        "malformed": signed[:-30],
        "xxe": b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + signed,
        "oversized": signed + b" " * 200_000,
    }[variant]
    server.document = bad
    with caplog.at_level(logging.WARNING, logger="idp.federation.remote"):
        assert not source.refresh()
    assert source.last_error.startswith(reason), source.last_error
    assert source.accepted == good
    assert "keeping the last good copy" in caplog.text


def test_unsafe_entities_are_dropped_from_an_accepted_aggregate(
    tmp_path: Path,
    server: AggregateServer,
    keys: dict[str, Path],
    members: dict[str, str],
    test_pki: TestPki,
    caplog: pytest.LogCaptureFixture,
) -> None:
    duplicate_b = members["b"].replace("b.example.test/saml/acs", "b.example.test/other/acs")
    server.document = _aggregate(
        tmp_path,
        keys,
        [members["a"], members["b"], duplicate_b, members["thief"], members["expired"]],
    )
    source = _source(tmp_path, server, keys, test_pki)
    with caplog.at_level(logging.WARNING, logger="idp.federation.remote"):
        assert source.refresh()
    assert source.accepted is not None
    # A keeps its ACS; B is in twice (both copies dropped); the thief and the expired SP go.
    assert source.accepted.entity_ids == (A_ID,)
    assert f"SP {B_ID} in aggregate" in caplog.text and "occurs more than once" in caplog.text
    assert "https://thief.example.test/md" in caplog.text and "claims ACS" in caplog.text
    assert "https://old.example.test/md" in caplog.text and "CN=expired expired" in caplog.text


def test_plain_http_is_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    source = RemoteAggregate("http://localhost:1/aggregate.xml", keys["cert"], tmp_path)
    assert not source.refresh()
    assert source.last_error.startswith("insecure_url:")


def test_missing_federation_certificate_is_a_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="federation certificate"):
        RemoteAggregate("https://localhost/a.xml", tmp_path / "missing.pem", tmp_path)

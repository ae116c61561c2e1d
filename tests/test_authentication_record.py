"""The Authentication record's JSON form: what the pending login, the SSO session and the OIDC
codes store, and what SAML Single Logout's session key is computed from."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from idp.authn import Authentication

pytestmark = pytest.mark.unit


def test_its_json_is_every_field_and_reads_back_the_same() -> None:
    authentication = Authentication(
        "SE2120001355-E0001", "Åsa", "Öberg", "Sjuksköterska", "Göteborgs Stad",
        "asa@example.test", "siths-this-device", "ab" * 32, 1_765_000_000, login_id="x1",
    )  # fmt: skip
    as_json = authentication.to_json()
    assert as_json == dataclasses.asdict(authentication)
    assert Authentication.from_json(as_json) == authentication
    as_json["hsa_id"] = "changed"  # a copy: the record itself stays as it was
    assert authentication.hsa_id == "SE2120001355-E0001"


def test_every_field_is_a_scalar_so_a_shallow_copy_is_a_whole_one() -> None:
    hints = typing.get_type_hints(Authentication)
    assert {hints[field.name] for field in dataclasses.fields(Authentication)} <= {str, int}

"""Fixtures of the portal's tests: settings in a temporary folder, a migrated database with an
IT-kontaktperson of the private provider and an EKU administrator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from portal.config import Settings
from portal.db import Database
from portal.models import EKU_ADMIN, IT_CONTACT, RoleGrant

PROVIDER = "5567000010"
IT = "SE5567000010-P0001"
EKU = "SE2120001355-E0005"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        var_dir=tmp_path, base_url="https://portal.example.test", session_secret="x" * 40
    )


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    with database.session() as session:
        session.add(
            RoleGrant(
                hsa_id=IT,
                role=IT_CONTACT,
                provider_org=PROVIDER,
                mail="it@omsorgvast.example.invalid",
            )
        )
        session.add(RoleGrant(hsa_id=EKU, role=EKU_ADMIN, provider_org=""))
    yield database
    database.dispose()

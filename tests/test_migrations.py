"""The schema is the migrations' (idp/migrations): they agree with the models, run both ways,
and adopt a database made before migrations existed.

A failure of ``test_models_and_migrations_agree`` after changing a model means: write the
migration with ``idp db revision -m "what changed"`` and read what it wrote.
"""

from __future__ import annotations

import importlib
import pkgutil
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

import idp
from idp.db import (
    Base,
    Database,
    SchemaNotCurrent,
    alembic_config,
    create_schema,
    head_revision,
    import_model_modules,
    prepare_schema,
    schema_status,
    sqlite_file,
    upgrade_schema,
)
from tests.helpers.support import VENV_BIN, run_cli


@pytest.mark.parametrize(
    ("url", "file"),
    [
        ("sqlite:////var/lib/idp/idp.sqlite3", "/var/lib/idp/idp.sqlite3"),
        ("sqlite:///var/idp.sqlite3", "var/idp.sqlite3"),
        ("sqlite:///file:/srv/a%20b/idp.sqlite3?mode=ro&uri=true", "/srv/a b/idp.sqlite3"),
        ("sqlite:///file:idp.sqlite3?mode=rwc&uri=true", "idp.sqlite3"),
        ("sqlite:///file:shared?mode=memory&cache=shared&uri=true", None),
        ("sqlite:///:memory:", None),
        ("sqlite://", None),
    ],
)
def test_a_sqlite_url_names_its_file(url: str, file: str | None) -> None:
    """The folder made for the database (and its migration lock) is the file's, never a
    ``file:`` folder in the working directory."""
    assert sqlite_file(url) == (Path(file) if file else None)


def _import_every_idp_module() -> None:
    """Tables may be declared outside ``models`` modules: import everything to see them all."""
    for module in pkgutil.walk_packages(idp.__path__, "idp."):
        if ".migrations" in module.name:
            continue
        importlib.import_module(module.name)


@pytest.fixture
def database(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'idp.sqlite3'}")
    yield database
    database.dispose()


def test_models_and_migrations_agree(database: Database) -> None:
    _import_every_idp_module()
    upgrade_schema(database.engine)
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
        tables = set(inspect(connection).get_table_names())
    assert differences == [], (
        "the models differ from the migrations: run `idp db revision -m ...`\n"
        + "\n".join(map(str, differences))
    )
    assert set(Base.metadata.tables) <= tables
    assert schema_status(database.engine).up_to_date


def test_model_modules_are_found_on_disk() -> None:
    import_model_modules()
    names = {table.name for table in Base.metadata.sorted_tables}
    # One table of each package that declares tables today.
    assert {"pending_logins", "directory_entries", "oidc_clients"} <= names


def test_migrations_downgrade_to_nothing_and_back(database: Database) -> None:
    upgrade_schema(database.engine)
    with database.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    with database.engine.connect() as connection:
        assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
    upgrade_schema(database.engine)
    assert schema_status(database.engine).current == head_revision()


def test_database_made_by_create_all_is_adopted_with_its_rows(
    database: Database, tmp_path: Path
) -> None:
    import_model_modules()
    Base.metadata.create_all(database.engine)
    with sqlite3.connect(tmp_path / "idp.sqlite3") as raw:
        raw.execute(
            "INSERT INTO directory_entries (hsa_id, person_key, given_name, surname, title, "
            "organisation, mail, active) VALUES ('SE2120001355-E0001', 'p', 'Anna', "
            "'Andersson', '', '', '', 1)"
        )
    assert schema_status(database.engine).current is None
    create_schema(database.engine)
    assert schema_status(database.engine).up_to_date
    with sqlite3.connect(tmp_path / "idp.sqlite3") as raw:
        assert raw.execute("SELECT given_name FROM directory_entries").fetchall() == [("Anna",)]
    create_schema(database.engine)  # and again: nothing to do


@pytest.mark.integration  # runs the CLI in a process of its own
def test_db_commands(tmp_path: Path) -> None:
    env = {"IDP_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}"}
    upgraded = run_cli([str(VENV_BIN / "idp"), "db", "upgrade"], env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"database schema at {head_revision()}" in upgraded.stdout
    after = run_cli([str(VENV_BIN / "idp"), "db", "current"], env)
    assert after.returncode == 0, after.stdout + after.stderr
    assert f"current: {head_revision()}" in after.stdout


def test_a_server_database_is_not_migrated_behind_the_operators_back(
    database: Database,
) -> None:
    # migrate=False is what a node on PostgreSQL does by default: it only checks.
    with pytest.raises(SchemaNotCurrent, match="idp db upgrade"):
        prepare_schema(database.engine, migrate=False)
    assert schema_status(database.engine).current is None
    prepare_schema(database.engine)  # SQLite: the embedded default migrates
    prepare_schema(database.engine, migrate=False)

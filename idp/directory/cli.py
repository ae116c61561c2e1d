"""``idp people …``: the IT contact's commands for the directory."""

from __future__ import annotations

from pathlib import Path

import click

from idp.config import Settings
from idp.db import Database, create_schema
from idp.directory.people import (
    DirectoryError,
    NewEntry,
    add_entry,
    deactivate_entry,
    find_entry,
    import_csv,
    list_entries,
)


def _database() -> Database:
    database = Database(Settings().database_url)
    create_schema(database.engine)
    return database


@click.group("people")
def people_group() -> None:
    """People and their HSA-IDs in the directory."""


@people_group.command("add")
@click.option("--hsa-id", required=True)
@click.option("--given-name", required=True)
@click.option("--surname", required=True)
@click.option("--title", default="")
@click.option("--organisation", default="")
@click.option("--mail", default="")
@click.option(
    "--same-person-as",
    "person_key",
    default="",
    help="An HSA-ID the person already has (links tjänste-id of one person).",
)
def add_command(**fields: str) -> None:
    """Add one HSA-ID."""
    database = _database()
    try:
        with database.session() as session:
            if fields["person_key"]:
                existing = find_entry(session, fields["person_key"])
                if existing is None:
                    raise DirectoryError(f"{fields['person_key']} is not in the directory")
                fields["person_key"] = existing.person_key
            entry = add_entry(session, NewEntry(**fields))
            click.echo(f"added {entry.hsa_id} {entry.display_name}")
    except DirectoryError as exc:
        raise click.ClickException(str(exc)) from exc


@people_group.command("list")
def list_command() -> None:
    """List every HSA-ID with its person and state."""
    with _database().session() as session:
        for entry in list_entries(session):
            state = "active" if entry.active else "deactivated"
            click.echo(
                f"{entry.hsa_id}\t{entry.display_name}\t{entry.title}\t{entry.organisation}"
                f"\t{entry.mail}\t{state}"
            )


@people_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_command(csv_file: Path) -> None:
    """Import people from CSV; nothing is added unless every row is good."""
    with _database().session() as session:
        report = import_csv(session, csv_file.read_bytes())
        if report.errors:
            for error in report.errors:
                click.echo(error, err=True)
            raise click.ClickException(f"{len(report.errors)} bad row(s); nothing was imported")
        click.echo(f"imported {report.added} HSA-ID(s)")


@people_group.command("deactivate")
@click.argument("hsa_id")
def deactivate_command(hsa_id: str) -> None:
    """Stop an HSA-ID from logging in (its SSO sessions end too)."""
    try:
        with _database().session() as session:
            deactivate_entry(session, hsa_id)
    except DirectoryError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"deactivated {hsa_id}")

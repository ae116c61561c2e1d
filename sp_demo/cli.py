"""The ``sp-demo`` command: serve mock Treserva, write its SAML metadata, manage its users.

Configuration comes from the environment (``SP_DEMO_*``, see :mod:`sp_demo.config`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sp_demo.config import Settings
from sp_demo.db import Database, list_users, seed_demo_users


def _require_files(settings: Settings, names: tuple[str, ...]) -> None:
    paths = {name: getattr(settings, name) for name in names}
    missing = [f"{name} ({path})" for name, path in paths.items() if not path.is_file()]
    if missing:
        raise click.ClickException(
            "missing: "
            + ", ".join(missing)
            + ". Create the test PKI with `idp pki init --dir var/pki` or set the SP_DEMO_* "
            "variables."
        )


@click.group()
def main() -> None:
    """Mock Treserva: a SAML SP that logs in through Göteborgs Stads Åtkomsttjänst."""


@main.command("serve")
@click.option("--log-level", default="info", show_default=True)
def serve_command(log_level: str) -> None:
    """Serve mock Treserva on SP_DEMO_HOST:SP_DEMO_PORT (HTTPS when SP_DEMO_BASE_URL is)."""
    import uvicorn

    from sp_demo.app import create_app

    settings = Settings()
    needed = ("sp_key", "sp_cert") + (("tls_cert", "tls_key") if settings.uses_https else ())
    _require_files(settings, needed)
    tls: dict[str, str] = {}
    if settings.uses_https:
        tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
    click.echo(f"{settings.display_name}: {settings.base_url}/")
    click.echo(f"SAML metadata:   {settings.base_url}/saml/metadata")
    source = settings.idp_metadata_file or settings.idp_metadata_url
    click.echo(f"IdP metadata:    {source}")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
        **tls,  # type: ignore[arg-type]
    )


@main.command("metadata")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file (e.g. metadata/sp/treserva.xml) instead of standard output.",
)
def metadata_command(out: Path | None) -> None:
    """Write this SP's SAML metadata (what the IdP needs to know about it)."""
    from sp_demo.saml import build_sp_metadata_xml

    settings = Settings()
    _require_files(settings, ("sp_cert", "sp_key"))
    xml = build_sp_metadata_xml(settings)
    if out is None:
        sys.stdout.write(xml + "\n")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename: the IdP re-reads its metadata directory and must never see half a file.
    temporary = out.with_name(f".{out.name}.tmp")
    temporary.write_text(xml + "\n", encoding="utf-8")
    temporary.replace(out)
    click.echo(f"Wrote {out} ({settings.entity_id})", err=True)


@main.group("users")
def users_group() -> None:
    """Treserva's own user register (accounts, HSA-IDs, permissions)."""


@users_group.command("seed")
def seed_command() -> None:
    """Add the invented demo users that are missing (safe to run again)."""
    database = Database(Settings().database_url)
    try:
        with database.session() as session:
            added = seed_demo_users(session)
            names = [
                f"{user.display_name} ({user.hsa_id or user.windows_account})" for user in added
            ]
    finally:
        database.dispose()
    if names:
        click.echo(f"Added {len(names)} users: " + ", ".join(names))
    else:
        click.echo("All demo users exist already.")


@users_group.command("list")
def list_command() -> None:
    """List accounts with HSA-ID and permissions."""
    database = Database(Settings().database_url)
    try:
        with database.session() as session:
            users = list_users(session)
            rows = [
                (
                    user.windows_account,
                    user.display_name,
                    user.hsa_id or "-",
                    "; ".join(f"{p.role}, {p.unit}" for p in user.permissions) or "-",
                )
                for user in users
            ]
    finally:
        database.dispose()
    if not rows:
        click.echo("No users. Run `sp-demo users seed`.")
        return
    headers = ("Windows account", "Name", "HSA-ID", "Permissions")
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(3)]
    for row in (headers, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[3]]))

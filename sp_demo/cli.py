"""The ``sp-demo`` command: serve mock Treserva, write its SAML metadata, manage its users.

Configuration comes from the environment (``SP_DEMO_*``, see :mod:`sp_demo.config`). Changes
to the register (``users import``, ``grant-admin``, ``generate``) are recorded in the audit
trail as made by ``--by`` or, by default, ``cli:<operating-system user>``.
"""

from __future__ import annotations

import codecs
import sys
from pathlib import Path

import click
import uvicorn

from sp_demo import audit
from sp_demo.app import create_app
from sp_demo.config import Settings
from sp_demo.db import LOGIN_WINDOWS, Database, list_users, seed_demo_users
from sp_demo.demo_data import add_demo_accounts, directory_csv
from sp_demo.idp_directory import DirectoryFileError, load_known_hsa_ids
from sp_demo.problems import ChangeRefused
from sp_demo.readiness import REASONS, build_report, report_csv
from sp_demo.saml import build_sp_metadata_xml
from sp_demo.user_csv import write_export
from sp_demo.user_import import import_users
from sp_demo.users import grant_admin

# Imports of at least this many rows show their progress.
PROGRESS_MIN_ROWS = 100
_PROGRESS_LABELS = {"check": "Checking rows", "apply": "Applying rows"}


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
    """List accounts with HSA-ID and permissions ([Windows]: not yet moved to SITHS login)."""
    database = Database(Settings().database_url)
    try:
        with database.session() as session:
            users = list_users(session)
            rows = [
                (
                    user.windows_account,
                    user.display_name,
                    user.hsa_id or "-",
                    "; ".join(
                        f"{p.role}, {p.unit}" + (" [Windows]" if p.login == LOGIN_WINDOWS else "")
                        for p in user.permissions
                    )
                    or "-",
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


def _write_file(out: Path, text: str, *, bom: bool) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    # A BOM tells Excel the file is UTF-8 (else it shows å, ä, ö garbled); the import skips it.
    out.write_bytes((codecs.BOM_UTF8 if bom else b"") + text.encode("utf-8"))


class _Progress:
    """Progress of a long import on standard error: a bar on a terminal, and a line every tenth
    of the way otherwise (a log or a pipe has no use for a bar)."""

    def __init__(self) -> None:
        self._terminal = sys.stderr.isatty()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if total < PROGRESS_MIN_ROWS:
            return
        label = _PROGRESS_LABELS.get(stage, stage)
        percent = done * 100 // total
        if self._terminal:
            bar = "#" * (percent // 5)
            end = "\n" if done == total else ""
            click.echo(f"\r{label}: [{bar:<20}] {done}/{total}", err=True, nl=False)
            click.echo(end, err=True, nl=False)
        elif done == total or done % max(1, total // 10) == 0:
            click.echo(f"{label}: {done}/{total} ({percent} %)", err=True)


@users_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--only-good-rows",
    is_flag=True,
    help="Apply the good rows even if some are bad (default: change nothing unless all are good).",
)
@click.option("--by", "actor", default="", help="Who is making the change (for the audit trail).")
def import_command(csv_file: Path, only_good_rows: bool, actor: str) -> None:
    """Register HSA-IDs and move permissions to SITHS login from CSV (windows_account,hsa_id)."""
    database = Database(Settings().database_url)
    try:
        with database.session() as session:
            report = import_users(
                session,
                csv_file.read_bytes(),
                actor or audit.cli_actor(),
                only_good_rows=only_good_rows,
                progress=_Progress(),
            )
    finally:
        database.dispose()
    for found in report.problems:
        click.echo(f"{csv_file.name}, line {found.line}: {found.problem.en}", err=True)
    if not report.applied:
        raise click.ClickException(
            f"{len(report.problems)} bad rows: nothing was changed. Correct them, or use "
            "--only-good-rows to apply the good rows only."
        )
    click.echo(
        f"{report.good_rows} rows applied: {report.registered} HSA-IDs registered, "
        f"{report.moved_permissions} permissions moved to SITHS login, {report.unchanged} "
        f"unchanged; {len(report.skipped_lines)} rows without HSA-ID skipped"
        + (f"; {len(report.problems)} bad rows not applied." if report.problems else ".")
    )


@users_group.command("export")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file (UTF-8 with BOM, for Excel) instead of standard output.",
)
def export_command(out: Path | None) -> None:
    """Export accounts as CSV; fill in hsa_id and import the file again."""
    database = Database(Settings().database_url)
    try:
        with database.session() as session:
            text = write_export(list_users(session))
    finally:
        database.dispose()
    if out is None:
        sys.stdout.write(text)
        return
    _write_file(out, text, bom=True)
    click.echo(f"Wrote {out}", err=True)


@users_group.command("report")
@click.option(
    "--csv",
    "csv_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report as CSV to this file.",
)
@click.option(
    "--idp-directory",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The IdP's HSA-IDs (default: SP_DEMO_IDP_DIRECTORY_FILE).",
)
def report_command(csv_out: Path | None, idp_directory: Path | None) -> None:
    """Readiness report: who cannot log in after the cut-over, and why."""
    settings = Settings()
    directory_file = idp_directory or settings.idp_directory_file
    try:
        known = load_known_hsa_ids(directory_file) if directory_file else None
    except DirectoryFileError as error:
        raise click.ClickException(str(error)) from error
    database = Database(settings.database_url)
    try:
        with database.session() as session:
            report = build_report(session, settings.cutover_date, known)
    finally:
        database.dispose()
    click.echo(f"Cut-over: {report.cutover_date.isoformat()}")
    click.echo(
        f"{report.total_accounts} accounts: {report.ready_accounts} ready, "
        f"{len(report.findings)} cannot log in after the cut-over"
    )
    for reason, (_sv, english) in REASONS.items():
        click.echo(f"  {reason}: {report.count(reason)} ({english})")
    if not report.idp_checked:
        click.echo("  (HSA-IDs not checked against the IdP: no directory file given)")
    for finding in report.findings:
        click.echo(
            f"{finding.windows_account}\t{finding.hsa_id or '-'}\t{','.join(finding.reasons)}"
        )
    if csv_out is not None:
        _write_file(csv_out, report_csv(report), bom=True)
        click.echo(f"Wrote {csv_out}", err=True)


@users_group.command("grant-admin")
@click.argument("hsa_id")
@click.option("--by", "actor", default="", help="Who is making the change (for the audit trail).")
def grant_admin_command(hsa_id: str, actor: str) -> None:
    """Give the account with HSA_ID the administrator permission (the /admin page)."""
    database = Database(Settings().database_url)
    try:
        with database.session() as session:
            granted = grant_admin(session, hsa_id, actor or audit.cli_actor())
    except ChangeRefused as error:
        raise click.ClickException(error.problem.en) from error
    finally:
        database.dispose()
    click.echo(f"{hsa_id} is {'now' if granted else 'already'} an administrator.")


@users_group.command("generate")
@click.option("--count", default=300, show_default=True, help="How many accounts.")
@click.option(
    "--idp-directory-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the IdP directory (idp people import CSV) of the accounts it knows.",
)
def generate_command(count: int, idp_directory_out: Path | None) -> None:
    """Add a generated demo register of invented accounts (for the readiness report)."""
    database = Database(Settings().database_url)
    try:
        with database.session() as session:
            accounts = add_demo_accounts(session, count, audit.cli_actor())
    finally:
        database.dispose()
    click.echo(f"{len(accounts)} generated accounts in the register.")
    if idp_directory_out is not None:
        _write_file(idp_directory_out, directory_csv(accounts), bom=False)
        click.echo(f"Wrote {idp_directory_out}", err=True)


@users_group.command("audit")
@click.option("--limit", default=50, show_default=True)
def audit_command(limit: int) -> None:
    """The newest changes to the register, newest first."""
    database = Database(Settings().database_url)
    try:
        with database.session() as session:
            events = audit.recent_events(session, limit)
            lines = [
                f"{e.at:%Y-%m-%d %H:%M:%S}\t{e.actor}\t{e.action}\t{e.windows_account}\t{e.detail}"
                for e in events
            ]
    finally:
        database.dispose()
    for line in lines:
        click.echo(line)

"""``portal …``: serve the portal, grant roles, send the outbox."""

from __future__ import annotations

import getpass
import threading
from pathlib import Path

import click
import httpx
import uvicorn

from portal import card_client, mail, roles
from portal.app import create_app
from portal.config import Settings
from portal.db import Database
from portal.mail_sink import start_sink
from siths_testkit.pki.softhsm import TokenError


def cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


@click.group()
def main() -> None:
    """Göteborgs Stads tjänsteportal (model): certificate and HSA-ID orders for SITHS cards."""


@main.command("serve")
@click.option("--log-level", default="info", show_default=True)
def serve_command(log_level: str) -> None:
    """Serve the portal on PORTAL_HOST:PORTAL_PORT (HTTPS when PORTAL_BASE_URL is)."""
    settings = Settings()
    tls: dict[str, str] = {}
    if settings.uses_https:
        for path in (settings.tls_cert, settings.tls_key):
            if not path.exists():
                raise click.ClickException(f"{path} is missing (run `make demo` once)")
        tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
    click.echo(f"{settings.display_name}: {settings.base_url}/")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
        **tls,  # type: ignore[arg-type]
    )


@main.group("roles")
def roles_group() -> None:
    """Who may do what in the portal (by HSA-ID)."""


@roles_group.command("grant")
@click.argument("hsa_id")
@click.option("--role", type=click.Choice(["it_contact", "eku_admin"]), required=True)
@click.option("--name", default="")
@click.option("--mail", default="", help="Where the portal mails this person (IT contacts).")
def grant_command(hsa_id: str, role: str, name: str, mail: str) -> None:
    """Grant a role; an IT contact acts for their HSA-ID's organisation."""
    database = Database(Settings().database_url)
    try:
        with database.session() as session:
            grant = roles.grant(session, hsa_id, role, cli_actor(), name=name, mail=mail)
            click.echo(f"granted {grant.role} to {grant.hsa_id} {grant.provider_org}".rstrip())
    except roles.RoleError as exc:
        raise click.ClickException(str(exc)) from exc


@roles_group.command("list")
def list_command() -> None:
    with Database(Settings().database_url).session() as session:
        for grant in roles.list_grants(session):
            click.echo(f"{grant.hsa_id}\t{grant.role}\t{grant.provider_org}\t{grant.mail}")


@main.group("outbox")
def outbox_group() -> None:
    """The mails the portal has to send."""


@outbox_group.command("send")
def send_command() -> None:
    """Try every waiting mail now (also the ones waiting to be retried)."""
    settings = Settings()
    database = Database(settings.database_url)
    with database.session() as session:
        mail.retry_now(session)
    sent, waiting = mail.send_due(settings, database.session)
    click.echo(f"sent {sent}, still waiting {waiting}")


@main.group("card")
def card_group() -> None:
    """The recipient's card software (a stand-in): step 6 onto a SoftHSM2 card."""


@card_group.command("enrol")
@click.argument("link")
@click.option("--token", "token_label", required=True, help="The card's token (its number).")
@click.option("--pin", required=True)
@click.option("--softhsm-conf", type=click.Path(path_type=Path), default=None)
@click.option("--ca-file", type=click.Path(exists=True, path_type=Path), default=None)
def enrol_command(
    link: str, token_label: str, pin: str, softhsm_conf: Path | None, ca_file: Path | None
) -> None:
    """Prove possession of the card and fetch the Göteborg certificate onto it.

    Without ``--ca-file`` the demo's test PKI CA is trusted if it exists, else the system's."""
    if ca_file is None and Settings().tls_ca_file.is_file():
        ca_file = Settings().tls_ca_file
    try:
        enrolled = card_client.enrol(
            link.strip().rstrip("/"),
            token_label=token_label,
            pin=pin,
            config=softhsm_conf,
            ca_file=ca_file,
        )
    except card_client.EnrolmentRefused as refused:
        raise click.ClickException(str(refused)) from refused
    except TokenError as exc:
        raise click.ClickException(str(exc)) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise click.ClickException(f"cannot reach the portal at {link.strip()}: {exc}") from exc
    click.echo(f"the card now carries {enrolled.hsa_id}")


@main.command("mail-sink")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=Path("var/mail"))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True)
def mail_sink_command(directory: Path, host: str, port: int) -> None:
    """Run the demo's SMTP server: every mail becomes an .eml file in --dir."""
    controller = start_sink(directory, host, port)
    click.echo(f"SMTP on {host}:{port}; mails go to {directory}/", err=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()

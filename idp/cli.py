"""The ``idp`` command: serve the IdP and administer its directory, keys and metadata.

The test kit's commands (``idp pki``, ``idp card``, ``idp app``) come from the
``atkomsttjansten.cli`` entry points (idp/command_plugins.py): this module never imports them.
"""

from __future__ import annotations

import click
from pydantic import ValidationError

from idp.command_plugins import PluginGroup
from idp.config import Settings, parse_workers
from idp.db import SchemaNotCurrent
from idp.directory.cli import people_group
from idp.federation.cli import keys_group, metadata_group, oidc_client_check
from idp.oidc.cli import client_group, oidc_group
from idp.ops.db_cli import db_group
from idp.server.run import ConfigurationError
from idp.server.serve import serve
from idp.server.supervisor import WorkerStartError


@click.group(cls=PluginGroup)
def main() -> None:
    """Göteborgs Stads Åtkomsttjänst (model)."""


class _WorkersType(click.ParamType):
    name = "N|auto"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        try:
            return parse_workers(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@main.command("serve")
@click.option("--log-level", default="info")
@click.option(
    "--behind-proxy",
    is_flag=True,
    default=None,
    help="Plain HTTP on IDP_PORT for nginx, no card listener (or IDP_BEHIND_PROXY=true).",
)
@click.option(
    "--workers",
    type=_WorkersType(),
    default=None,
    help="Worker processes sharing the node's ports, or 'auto' (one per CPU); "
    "default IDP_WORKERS, else 1.",
)
def serve_command(log_level: str, behind_proxy: bool | None, workers: int | None) -> None:
    """Serve HTTPS on IDP_PORT and the card listener on IDP_CERT_PORT (embedded), or plain
    HTTP on IDP_PORT behind a TLS-terminating proxy."""
    overrides = {"workers": workers} if workers is not None else {}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"IDP_{'_'.join(map(str, error['loc'])).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise click.ClickException(f"invalid settings: {problems}") from exc
    if behind_proxy:
        settings.behind_proxy = True
    if settings.behind_proxy:
        click.echo(f"Node (HTTP):       http://{settings.host}:{settings.port}/ behind a proxy")
    click.echo(f"IdP:               {settings.base_url}/")
    click.echo(f"SAML metadata:     {settings.base_url}/saml/metadata")
    click.echo(f"Certificate login: {settings.cert_login_url}/cert-login")
    if settings.workers > 1:
        click.echo(f"Workers:           {settings.workers} processes")
    try:
        serve(settings, log_level=log_level)
    except (ConfigurationError, SchemaNotCurrent, WorkerStartError) as exc:
        raise click.ClickException(str(exc)) from exc


main.add_command(people_group)
main.add_command(oidc_group)
main.add_command(db_group)
main.add_command(metadata_group)
main.add_command(keys_group)
# `idp oidc client check`: the OIDC counterpart of `idp metadata validate`.
client_group.add_command(oidc_client_check)

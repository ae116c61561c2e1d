"""The ``idp`` command: serve the IdP and administer its directory and test PKI."""

from __future__ import annotations

import click

from idp.app_simulator.cli import app_group
from idp.config import Settings
from idp.directory.cli import people_group
from idp.oidc.cli import oidc_group
from idp.pki.cli import card_group, pki_group
from idp.pki.revocation_cli import register_revocation_commands


@click.group()
def main() -> None:
    """Göteborgs Stads Åtkomsttjänst (model)."""


@main.command("serve")
@click.option("--log-level", default="info")
def serve_command(log_level: str) -> None:
    """Serve HTTPS on IDP_PORT and the card listener on IDP_CERT_PORT."""
    from idp.server.run import serve

    settings = Settings()
    click.echo(f"IdP:               {settings.base_url}/")
    click.echo(f"SAML metadata:     {settings.base_url}/saml/metadata")
    click.echo(f"Certificate login: {settings.cert_login_url}/cert-login")
    serve(settings, log_level=log_level)


main.add_command(people_group)
register_revocation_commands(pki_group, card_group)
main.add_command(pki_group)
main.add_command(card_group)
main.add_command(oidc_group)
main.add_command(app_group)

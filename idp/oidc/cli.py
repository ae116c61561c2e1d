"""``idp oidc …``: the operator's commands for OpenID Connect clients and signing keys."""

from __future__ import annotations

import json
from pathlib import Path

import click

from idp.config import Settings
from idp.db import Database, create_schema
from idp.oidc.claims import ACR_BY_PROFILE, DEFAULT_CLAIMS, USER_CLAIMS
from idp.oidc.clients import (
    AUTH_METHODS,
    CLIENT_SECRET_BASIC,
    ID_TOKEN_ALGS,
    ClientRegistrationError,
    NewClient,
    add_client,
    list_clients,
    public_jwks,
    remove_client,
)
from idp.oidc.keys import ALGORITHMS, describe_keys, rotate_keys
from idp.oidc.settings import OidcSettings


def _database() -> Database:
    database = Database(Settings().database_url)
    create_schema(database.engine)
    return database


@click.group("oidc")
def oidc_group() -> None:
    """OpenID Connect: registered clients and the ID token signing keys."""


@oidc_group.group("client")
def client_group() -> None:
    """Relying parties allowed to log users in with OpenID Connect."""


@client_group.command("add")
@click.argument("client_id")
@click.option("--name", required=True, help="Shown to the user on the login page.")
@click.option(
    "--redirect-uri", "redirect_uris", multiple=True, required=True, help="Exact; repeatable."
)
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True)
@click.option(
    "--auth-method", type=click.Choice(AUTH_METHODS), default=CLIENT_SECRET_BASIC, show_default=True
)
@click.option(
    "--public-key",
    "public_key_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The client's public key (PEM) or JWKS (JSON), for private_key_jwt.",
)
@click.option(
    "--claims",
    default=",".join(DEFAULT_CLAIMS),
    show_default=True,
    help=f"Comma-separated user claims the client may get: {', '.join(USER_CLAIMS)}.",
)
@click.option(
    "--id-token-alg", type=click.Choice(ID_TOKEN_ALGS), default="RS256", show_default=True
)
@click.option(
    "--acr-profile",
    type=click.Choice(sorted(ACR_BY_PROFILE)),
    default="sambi",
    show_default=True,
    help="Which LoA URI the client gets in acr (as the SAML attribute profiles).",
)
def add_command(
    client_id: str,
    name: str,
    redirect_uris: tuple[str, ...],
    post_logout_redirect_uris: tuple[str, ...],
    auth_method: str,
    public_key_file: Path | None,
    claims: str,
    id_token_alg: str,
    acr_profile: str,
) -> None:
    """Register CLIENT_ID. A client_secret_basic client's secret is printed once, here."""
    try:
        jwks = _read_public_key(public_key_file) if public_key_file else None
        new = NewClient(
            client_id=client_id,
            name=name,
            redirect_uris=redirect_uris,
            post_logout_redirect_uris=post_logout_redirect_uris,
            auth_method=auth_method,
            jwks=jwks,
            claims=[claim.strip() for claim in claims.split(",") if claim.strip()],
            id_token_alg=id_token_alg,
            acr_profile=acr_profile,
        )
        with _database().session() as session:
            client, secret = add_client(session, new)
    except ClientRegistrationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"client_id: {client.client_id}")
    if secret is not None:
        click.echo(f"client_secret: {secret}")
        click.echo("Store the secret now: the IdP keeps only its hash.", err=True)


def _read_public_key(path: Path) -> dict:
    data = path.read_bytes()
    if data.lstrip().startswith(b"{"):
        return public_jwks(json.loads(data))
    return public_jwks(data)


@client_group.command("list")
def list_command() -> None:
    """One line per client: id, auth method, claims, redirect URIs, name."""
    with _database().session() as session:
        for client in list_clients(session):
            click.echo(
                f"{client.client_id}\t{client.auth_method}\t{client.id_token_alg}"
                f"\t{','.join(client.claims)}\t{' '.join(client.redirect_uris)}\t{client.name}"
            )


@client_group.command("remove")
@click.argument("client_id")
def remove_command(client_id: str) -> None:
    """Remove a client; its codes and tokens stop working at once."""
    with _database().session() as session:
        removed = remove_client(session, client_id)
    if not removed:
        raise click.ClickException(f"{client_id} is not registered")
    click.echo(f"removed {client_id}")


@oidc_group.group("keys")
def keys_group() -> None:
    """The ID token signing keys (under IDP_OIDC_KEYS_DIR, by default var/oidc/keys)."""


@keys_group.command("list")
def keys_list_command() -> None:
    """Each key's id, algorithm and state (current signs, next is published ahead)."""
    settings = OidcSettings.for_idp(Settings())
    manifest = describe_keys(settings.keys_dir)
    if not manifest:
        click.echo("no keys yet: the IdP creates them on its first start", err=True)
    for info in manifest:
        click.echo(f"{info.kid}\t{info.alg}\t{info.state}\t{info.created}")


@keys_group.command("rotate")
@click.option("--alg", "algorithms", type=click.Choice(ALGORITHMS), multiple=True)
def keys_rotate_command(algorithms: tuple[str, ...]) -> None:
    """Roll over: the published next key starts signing, the current one is retired (still
    published), a new next key is published. Running IdPs follow within seconds."""
    settings = OidcSettings.for_idp(Settings())
    manifest = rotate_keys(
        settings.keys_dir, algorithms or ALGORITHMS, rsa_key_size=settings.rsa_key_size
    )
    for info in manifest:
        click.echo(f"{info.kid}\t{info.alg}\t{info.state}\t{info.created}")

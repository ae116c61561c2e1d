"""``idp pki …`` (create and inspect the test PKI) and ``idp card …`` (issue test cards).

Both work on TEST material only. The PKI directory defaults to ``var/pki``, or ``IDP_PKI_DIR``
when set, the same variable the IdP reads its PKI location from.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from idp.hsa_id import InvalidHsaId
from idp.pki.cards import DEFAULT_P12_PASSWORD, issue_card
from idp.pki.init import DEFAULT_BASE_URL_HOSTS, init_test_pki
from idp.pki.layout import FILES, MANIFEST, load_test_pki
from idp.pki.model import TestPki
from idp.pki.names import organisation_name, validate_hsa_id

__all__ = ["card_group", "pki_group"]

DEFAULT_PKI_DIR = Path("var/pki")

_DIR_TYPE = click.Path(file_okay=False, path_type=Path)


def _load(directory: Path, param_hint: str) -> TestPki:
    try:
        return load_test_pki(directory)
    except FileNotFoundError as exc:
        raise click.BadParameter(str(exc), param_hint=param_hint) from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def _show_path(path: Path) -> str:
    # Paths below the current directory are shown relative: shorter, and copy-pasteable.
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@click.group("pki")
def pki_group() -> None:
    """Create and inspect the TEST PKI that mirrors SITHS (never real keys)."""


@pki_group.command("init")
@click.option(
    "--dir",
    "directory",
    type=_DIR_TYPE,
    default=DEFAULT_PKI_DIR,
    envvar="IDP_PKI_DIR",
    show_default=True,
    help="Where to create the PKI (env: IDP_PKI_DIR).",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="Extra host name or IP for the TLS server certificate (repeatable); "
    f"{', '.join(DEFAULT_BASE_URL_HOSTS)} are always included.",
)
def init_command(directory: Path, hosts: tuple[str, ...]) -> None:
    """Generate the test PKI; does nothing if DIR already holds one."""
    pki = init_test_pki(
        directory,
        base_url_hosts=(*DEFAULT_BASE_URL_HOSTS, *hosts),
        progress=lambda line: click.echo(f"  {line}"),
    )
    click.echo(f"Test PKI in {_show_path(pki.directory)}:")
    click.echo(f"  trust anchors   {_show_path(pki.trust_anchors_file)}")
    click.echo(f"  intermediates   {_show_path(pki.intermediates_file)}")
    click.echo(f"  TLS CA          {_show_path(pki.tls_ca_cert)}")
    click.echo(f"  TLS server      {_show_path(pki.tls_server_cert)}")
    click.echo(f"  SAML signing    {_show_path(pki.idp_signing_cert)}")
    click.echo(f"  SP (Treserva)   {_show_path(pki.sp_signing_cert)}")
    good = [name for name, card in pki.cards.items() if card.kind == "good"]
    bad = [name for name, card in pki.cards.items() if card.kind != "good"]
    click.echo(f"  cards           {', '.join(good)}")
    click.echo(f"  bad cards       {', '.join(bad)}")
    click.echo(f"  manifest        {_show_path(pki.directory / MANIFEST)}")
    click.echo(f"PKCS#12 password of every card: {DEFAULT_P12_PASSWORD.decode()}")


@pki_group.command("show")
@click.option(
    "--dir",
    "directory",
    type=_DIR_TYPE,
    default=DEFAULT_PKI_DIR,
    envvar="IDP_PKI_DIR",
    show_default=True,
    help="The PKI directory (env: IDP_PKI_DIR).",
)
def show_command(directory: Path) -> None:
    """List the PKI's files and cards (name, kind, HSA-ID, files)."""
    pki = _load(directory, "--dir")
    click.echo(f"Test PKI in {_show_path(pki.directory)}")
    width = max(len(name) for name in FILES)
    for name in FILES:
        click.echo(f"  {name:<{width}}  {_show_path(getattr(pki, name))}")
    click.echo("Cards:")
    for card in pki.cards.values():
        same_card = f"  (same card as {', '.join(card.extra_certs)})" if card.extra_certs else ""
        click.echo(
            f"  {card.name:<17} {card.kind:<17} {card.hsa_id or '-':<20} "
            f"{card.given_name} {card.surname}{same_card}"
        )
        for path in (card.cert, card.key, card.p12):
            click.echo(f"      {_show_path(path)}")


@click.group("card")
def card_group() -> None:
    """Issue TEST SITHS cards (HSA-ID authentication certificates)."""


def _end_of_day(day: dt.datetime | None) -> dt.datetime | None:
    # "--not-after 2027-06-30" means valid through that day, so the last second of it (UTC).
    if day is None:
        return None
    return day.replace(hour=23, minute=59, second=59, tzinfo=dt.UTC)


@card_group.command("issue")
@click.option("--hsa-id", required=True, help="E.g. SE2120001355-E0042.")
@click.option("--given-name", required=True)
@click.option("--surname", required=True)
@click.option(
    "--org-number",
    help="The organisation number (10 digits); must be the one in the HSA-ID.",
)
@click.option("--org-name", help="O= in the subject; defaults from the organisation number.")
@click.option(
    "--not-after",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Last day of validity (UTC); default two years from now.",
)
@click.option(
    "--out",
    "out_dir",
    type=_DIR_TYPE,
    required=True,
    help="Directory for <HSA-ID>.crt.pem/.key.pem/.p12.",
)
@click.option(
    "--pki",
    "pki_dir",
    type=_DIR_TYPE,
    default=DEFAULT_PKI_DIR,
    envvar="IDP_PKI_DIR",
    show_default=True,
    help="The test PKI to issue from (env: IDP_PKI_DIR).",
)
@click.option(
    "--p12-password",
    default=DEFAULT_P12_PASSWORD.decode(),
    show_default=True,
    help="Password of the PKCS#12 file.",
)
def issue_command(
    hsa_id: str,
    given_name: str,
    surname: str,
    org_number: str | None,
    org_name: str | None,
    not_after: dt.datetime | None,
    out_dir: Path,
    pki_dir: Path,
    p12_password: str,
) -> None:
    """Issue an HSA-ID authentication certificate under the test HSA-id CA."""
    # Check everything the operator typed before touching the PKI, so mistakes are reported
    # as usage errors (exit code 2) and not as tracebacks.
    try:
        parsed = validate_hsa_id(hsa_id)
    except InvalidHsaId as exc:
        raise click.BadParameter(str(exc), param_hint="--hsa-id") from exc
    if org_number is not None and org_number != parsed.organisation_number:
        raise click.BadParameter(
            f"{org_number!r} is not the organisation number in HSA-ID {hsa_id}"
            f" ({parsed.organisation_number})",
            param_hint="--org-number",
        )
    if not p12_password:
        raise click.BadParameter("must not be empty", param_hint="--p12-password")
    pki = _load(pki_dir, "--pki")
    try:
        card = issue_card(
            pki,
            hsa_id=parsed.value,
            given_name=given_name,
            surname=surname,
            out_dir=out_dir,
            org_name=org_name or organisation_name(parsed.organisation_number),
            not_after=_end_of_day(not_after),
            p12_password=p12_password.encode("utf-8"),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"Issued TEST card for {card.given_name} {card.surname} ({card.hsa_id}):")
    click.echo(f"  certificate  {_show_path(card.cert)}")
    click.echo(f"  private key  {_show_path(card.key)}")
    click.echo(f"  PKCS#12      {_show_path(card.p12)}")

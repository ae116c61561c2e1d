"""``idp pki …`` (create and inspect the test PKI) and ``idp card …`` (issue test cards).

Both work on TEST material only. The PKI directory defaults to ``var/pki``, or ``IDP_PKI_DIR``
when set, the same variable the IdP reads its PKI location from. ``idp card issue --token``
puts the card on a SoftHSM2 token instead of in files (see :mod:`siths_testkit.pki.tokens`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import click

from idp.hsa_id import HsaId, InvalidHsaId
from siths_testkit.pki.cards import DEFAULT_P12_PASSWORD, issue_card
from siths_testkit.pki.init import DEFAULT_BASE_URL_HOSTS, init_test_pki
from siths_testkit.pki.layout import FILES, MANIFEST, load_test_pki
from siths_testkit.pki.model import TestPki
from siths_testkit.pki.names import organisation_name, validate_hsa_id
from siths_testkit.pki.revocation import DEFAULT_REVOCATION_URL
from siths_testkit.pki.softhsm import TokenError, create_token, resolve_config, token_exists
from siths_testkit.pki.storage import write_certificates
from siths_testkit.pki.tokens import issue_card_on_token

__all__ = ["card_group", "pki_group"]

DEFAULT_PKI_DIR = Path("var/pki")
# Well-known TEST PINs, like the PKCS#12 password: these tokens hold test cards only.
DEFAULT_TOKEN_PIN = DEFAULT_P12_PASSWORD.decode()
DEFAULT_TOKEN_SO_PIN = "12345678"  # noqa: S105 (test tokens only)

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
@click.option(
    "--revocation-url",
    default=DEFAULT_REVOCATION_URL,
    show_default=True,
    help="Where `idp pki ocsp-responder` will serve; cards point at URL/ocsp and URL/crl/….",
)
def init_command(directory: Path, hosts: tuple[str, ...], revocation_url: str) -> None:
    """Generate the test PKI; does nothing if DIR already holds one."""
    pki = init_test_pki(
        directory,
        base_url_hosts=(*DEFAULT_BASE_URL_HOSTS, *hosts),
        progress=lambda line: click.echo(f"  {line}"),
        revocation_url=revocation_url,
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
    help="Directory for <HSA-ID>.crt.pem/.key.pem/.p12 (with --token: for the certificate "
    "only; optional).",
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
@click.option(
    "--token",
    "token_label",
    help="Put the card on this SoftHSM2 token (created if missing): the key pair is "
    "generated there and never leaves it.",
)
@click.option(
    "--pin",
    default=DEFAULT_TOKEN_PIN,
    show_default=True,
    help="The token's user PIN (with --token).",
)
@click.option(
    "--so-pin",
    default=DEFAULT_TOKEN_SO_PIN,
    show_default=True,
    help="The security officer PIN, used only when the token is created.",
)
@click.option(
    "--key-type",
    type=click.Choice(["rsa", "ec"]),
    default="rsa",
    show_default=True,
    help="RSA-2048 (as SITHS cards) or EC P-256 (with --token).",
)
@click.option(
    "--softhsm-conf",
    type=click.Path(path_type=Path),
    help="SoftHSM2 configuration [default: $SOFTHSM2_CONF, else var/softhsm/softhsm2.conf].",
)
def issue_command(
    hsa_id: str,
    given_name: str,
    surname: str,
    org_number: str | None,
    org_name: str | None,
    not_after: dt.datetime | None,
    out_dir: Path | None,
    pki_dir: Path,
    p12_password: str,
    token_label: str | None,
    pin: str,
    so_pin: str,
    key_type: str,
    softhsm_conf: Path | None,
) -> None:
    """Issue an HSA-ID authentication certificate under the test HSA-id CA.

    As files (--out), or on a SoftHSM2 token (--token) where the private key is generated and
    stays, with the certificate stored beside it.
    """
    # Check everything the operator typed before touching the PKI, so mistakes are reported
    # as usage errors (exit code 2) and not as tracebacks.
    parsed = _checked_hsa_id(hsa_id, org_number)
    holder = _CardHolder(
        hsa_id=parsed.value,
        given_name=given_name,
        surname=surname,
        org_name=org_name or organisation_name(parsed.organisation_number),
        not_after=_end_of_day(not_after),
    )
    if token_label is not None:
        token = _TokenChoice(token_label, pin, so_pin, softhsm_conf, key_type)
        _issue_on_token(_load(pki_dir, "--pki"), holder, token, out_dir)
        return
    if out_dir is None:
        raise click.UsageError("give --out (a directory for the files) or --token")
    if not p12_password:
        raise click.BadParameter("must not be empty", param_hint="--p12-password")
    _issue_in_files(_load(pki_dir, "--pki"), holder, out_dir, p12_password)


@dataclass(frozen=True)
class _CardHolder:
    """Whom ``idp card issue`` issues for, checked and with the defaults filled in."""

    hsa_id: str
    given_name: str
    surname: str
    org_name: str
    not_after: dt.datetime | None


@dataclass(frozen=True)
class _TokenChoice:
    """The SoftHSM2 token options of ``idp card issue --token``."""

    label: str
    pin: str
    so_pin: str
    softhsm_conf: Path | None
    key_type: str


def _checked_hsa_id(hsa_id: str, org_number: str | None) -> HsaId:
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
    return parsed


def _issue_in_files(pki: TestPki, holder: _CardHolder, out_dir: Path, p12_password: str) -> None:
    try:
        card = issue_card(
            pki,
            hsa_id=holder.hsa_id,
            given_name=holder.given_name,
            surname=holder.surname,
            out_dir=out_dir,
            org_name=holder.org_name,
            not_after=holder.not_after,
            p12_password=p12_password.encode("utf-8"),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"Issued TEST card for {card.given_name} {card.surname} ({card.hsa_id}):")
    click.echo(f"  certificate  {_show_path(card.cert)}")
    click.echo(f"  private key  {_show_path(card.key)}")
    click.echo(f"  PKCS#12      {_show_path(card.p12)}")


def _issue_on_token(
    pki: TestPki, holder: _CardHolder, token: _TokenChoice, out_dir: Path | None
) -> None:
    try:
        config = resolve_config(token.softhsm_conf)
        if not token_exists(config, token.label):
            create_token(config, token.label, pin=token.pin, so_pin=token.so_pin)
            click.echo(f"Created SoftHSM2 token {token.label!r} ({_show_path(config)})")
        card = issue_card_on_token(
            pki,
            config,
            token.label,
            token.pin,
            hsa_id=holder.hsa_id,
            given_name=holder.given_name,
            surname=holder.surname,
            org_name=holder.org_name,
            not_after=holder.not_after,
            key_type="ec" if token.key_type == "ec" else "rsa",
        )
    except TokenError as exc:
        raise click.ClickException(str(exc)) from exc
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(
        f"Issued TEST card for {holder.given_name} {holder.surname} ({card.hsa_id}) on a token:"
    )
    click.echo(f"  token        {card.token_label} (SoftHSM2 configuration {_show_path(config)})")
    click.echo(f"  key pair     {token.key_type.upper()}, generated on the token, not extractable")
    click.echo(f"  CKA_ID       {card.key_id.hex()} (CKA_LABEL {card.hsa_id})")
    if out_dir is not None:
        path = out_dir / f"{card.hsa_id}.crt.pem"
        write_certificates(path, [card.certificate])
        click.echo(f"  certificate  {_show_path(path)} (also on the token)")
    else:
        click.echo("  certificate  on the token")

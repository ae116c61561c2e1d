"""``idp app login``: play the SITHS eID app by hand, with a card on a SoftHSM2 token.

Scan (``--qr`` with the QR code's content, or ``--autostart`` with the autoStartToken), show
what is being signed, unlock the card with the PIN, sign on the token and send the signature.
Each step is printed. Exit status 0 when the IdP completed the order, 1 when it (or the card)
refused; a refused PIN cancels the order, as the user giving up in the app does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import click
import httpx
from cryptography import x509
from cryptography.x509.oid import NameOID

from siths_testkit.app_simulator.client import SithsEidApp
from siths_testkit.app_simulator.protocol import AppApiError, ScanResult, SignResult
from siths_testkit.app_simulator.token import SoftHsmCard
from siths_testkit.pki.layout import FILES
from siths_testkit.pki.softhsm import TokenError, resolve_config

__all__ = ["app_group"]

DEFAULT_BASE_URL = "https://localhost:8443"


def _default_ca() -> Path:
    # The IdP's TLS certificate comes from the test PKI, so its CA is the one to trust.
    return Path(os.environ.get("IDP_PKI_DIR", "var/pki")) / FILES["tls_ca_cert"]


@click.group("app")
def app_group() -> None:
    """Simulate the SITHS eID app (TEST): scan a QR code and sign with a card on a token."""


@app_group.command("login")
@click.option("--qr", "qr_content", help="The QR code's content: sithseid.<token>.<s>.<code>.")
@click.option("--autostart", "auto_start_token", help="The autoStartToken (app on this device).")
@click.option("--token", "token_label", required=True, help="Label of the card's token.")
@click.option("--pin", prompt="PIN", hide_input=True, help="The card's PIN (asked if left out).")
@click.option("--hsa-id", help="Which certificate, if the card holds several.")
@click.option(
    "--base-url",
    envvar="IDP_BASE_URL",
    default=DEFAULT_BASE_URL,
    show_default=True,
    help="The IdP (env: IDP_BASE_URL).",
)
@click.option(
    "--ca",
    "ca_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CA bundle for the IdP's TLS certificate [default: $IDP_PKI_DIR/tls/ca.crt.pem].",
)
@click.option(
    "--softhsm-conf",
    type=click.Path(path_type=Path),
    help="SoftHSM2 configuration [default: $SOFTHSM2_CONF, else var/softhsm/softhsm2.conf].",
)
def login_command(
    qr_content: str | None,
    auto_start_token: str | None,
    token_label: str,
    pin: str,
    hsa_id: str | None,
    base_url: str,
    ca_file: Path | None,
    softhsm_conf: Path | None,
) -> None:
    """Scan an order and sign it with the card on TOKEN."""
    if (qr_content is None) == (auto_start_token is None):
        raise click.UsageError("give exactly one of --qr and --autostart")
    ca_file = ca_file or _default_ca()
    if not ca_file.is_file():
        raise click.BadParameter(f"{ca_file} does not exist", param_hint="--ca")
    try:
        config = resolve_config(softhsm_conf)
    except TokenError as exc:
        raise click.BadParameter(str(exc), param_hint="--softhsm-conf") from exc
    try:
        result = _scan_and_sign(
            base_url, ca_file, config, qr_content, auto_start_token, token_label, pin, hsa_id
        )
    except httpx.HTTPError as exc:
        _fail(f"Cannot talk to the IdP at {base_url}: {exc}")
    click.echo(
        f"Signed on the token ({result.submission.algorithm}); "
        f"the IdP says the order is {result.state.status}."
    )
    click.echo("The browser now continues the login by itself.")


def _scan_and_sign(
    base_url: str,
    ca_file: Path,
    config: Path,
    qr_content: str | None,
    auto_start_token: str | None,
    token_label: str,
    pin: str,
    hsa_id: str | None,
) -> SignResult:
    with SithsEidApp(base_url, ca_file) as app:
        try:
            if qr_content is not None:
                click.echo(f"Scanning the QR code at {base_url} …")
                scan = app.scan(qr_content)
            else:
                click.echo(f"Starting from the autoStartToken at {base_url} …")
                scan = app.scan_auto_start(auto_start_token or "")
        except AppApiError as exc:
            _fail(f"The IdP refused the scan: {exc.error_code}: {exc.details}")
        click.echo(f"Order {scan.order_ref} is ours. The app shows:")
        click.echo(f"  «{scan.user_visible_data}»")
        click.echo(f"Unlocking card {token_label!r} with the PIN …")
        try:
            card = SoftHsmCard(token_label, pin, config=config, hsa_id=hsa_id)
        except TokenError as exc:
            _cancel(app, scan)
            _fail(f"The card refused: {exc}")
        click.echo(
            f"Card: {_common_name(card.certificate().subject)} ({card.hsa_id or 'no HSA-ID'})"
        )
        try:
            result = app.sign(scan, card=card)
        except AppApiError as exc:
            _fail(f"The IdP refused the signature: {exc.error_code}: {exc.details}")
        except TokenError as exc:
            _cancel(app, scan)
            _fail(f"The card could not sign: {exc}")
    return result


def _common_name(name: x509.Name) -> str:
    names = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else name.rfc4514_string()


def _cancel(app: SithsEidApp, scan: ScanResult) -> None:
    try:
        app.cancel(scan)
        click.echo(f"Cancelled order {scan.order_ref} in the IdP.", err=True)
    except AppApiError as exc:
        click.echo(f"Could not cancel the order: {exc.error_code}: {exc.details}", err=True)


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    raise SystemExit(1)

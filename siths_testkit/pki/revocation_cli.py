"""``idp card revoke``, ``idp pki crl`` and ``idp pki ocsp-responder``: the test PKI revokes.

Attached to the ``idp pki`` and ``idp card`` groups by :func:`register_revocation_commands`
(kept apart from :mod:`siths_testkit.pki.cli` so that module stays about creating and issuing).
"""

from __future__ import annotations

import datetime as dt
import logging
import urllib.parse
from pathlib import Path

import click
from cryptography import x509

from idp.hsa_id import InvalidHsaId
from siths_testkit.pki.cli import _DIR_TYPE, DEFAULT_PKI_DIR, _load, _show_path
from siths_testkit.pki.names import validate_hsa_id
from siths_testkit.pki.ocsp_responder import DEFAULT_NEXT_UPDATE_SECONDS, serve
from siths_testkit.pki.revocation import (
    DEFAULT_REVOCATION_URL,
    REASONS,
    find_issued,
    issued_by,
    published_url,
    revoke,
    write_crls,
)
from siths_testkit.pki.storage import load_certificate

__all__ = ["register_revocation_commands"]


def _pki_dir_option(name: str) -> click.Option:
    return click.option(
        name,
        "directory",
        type=_DIR_TYPE,
        default=DEFAULT_PKI_DIR,
        envvar="IDP_PKI_DIR",
        show_default=True,
        help="The test PKI (env: IDP_PKI_DIR).",
    )


def _read_certificate(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise click.BadParameter(f"{path} is not a certificate", param_hint="TARGET") from exc


@click.command("revoke")
@click.argument("target")
@click.option(
    "--reason",
    type=click.Choice(REASONS),
    default="unspecified",
    show_default=True,
    help="The RFC 5280 reason, e.g. keyCompromise for a lost card.",
)
@_pki_dir_option("--pki")
def revoke_command(target: str, reason: str, directory: Path) -> None:
    """Revoke a TEST card: TARGET is an HSA-ID or a certificate file.

    An HSA-ID revokes every unexpired certificate with that HSA-ID that this PKI issued (the
    lost card); a file revokes exactly that certificate. The OCSP responder answers "revoked"
    from its next request on, and the CRL files are rewritten.
    """
    pki = _load(directory, "--pki")
    now = dt.datetime.now(dt.UTC)
    path = Path(target)
    if path.is_file():
        certificate = _read_certificate(path)
        if not issued_by(certificate, load_certificate(pki.hsa_ca_cert)):
            raise click.ClickException(
                f"{target} was not issued by this PKI's HSA-id CA; it is not ours to revoke"
            )
        values = certificate.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)
        targets = [(certificate.serial_number, str(values[0].value) if values else "")]
    else:
        try:
            hsa_id = validate_hsa_id(target).value
        except InvalidHsaId as exc:
            raise click.BadParameter(
                f"{target!r} is neither a certificate file nor an HSA-ID ({exc})",
                param_hint="TARGET",
            ) from exc
        records = find_issued(pki.directory, hsa_id, now)
        if not records:
            raise click.ClickException(
                f"this PKI has issued no unexpired certificate with HSA-ID {hsa_id}"
                " (give the certificate file instead)"
            )
        targets = [(record.serial, record.hsa_id) for record in records]
    added = revoke(pki, targets, x509.ReasonFlags(reason), now)
    for serial, hsa_id in targets:
        fresh = any(entry.serial == serial for entry in added)
        state = "revoked" if fresh else "was already revoked"
        click.echo(f"{hsa_id or '(no HSA-ID)'} serial {serial:x}: {state} ({reason})")
    click.echo(
        "The OCSP responder answers 'revoked' from now on; an IdP notices once its cached "
        "answer reaches nextUpdate."
    )


@click.command("crl")
@_pki_dir_option("--dir")
@click.option(
    "--valid-hours",
    type=click.IntRange(min=1),
    default=24,
    show_default=True,
    help="nextUpdate of the CRLs, in hours from now.",
)
def crl_command(directory: Path, valid_hours: int) -> None:
    """Write the issuing CAs' CRLs (DER) to DIR/crl/ from the revocation registry."""
    pki = _load(directory, "--dir")
    written = write_crls(pki, validity=dt.timedelta(hours=valid_hours), now=dt.datetime.now(dt.UTC))
    for path in written:
        click.echo(f"CRL {_show_path(path)}")


@click.command("ocsp-responder")
@_pki_dir_option("--dir")
@click.option("--host", help="Address to listen on [default: from the PKI's revocation URL].")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Port to listen on [default: from the PKI's revocation URL].",
)
@click.option(
    "--next-update-seconds",
    type=click.IntRange(min=1),
    default=DEFAULT_NEXT_UPDATE_SECONDS,
    show_default=True,
    help="nextUpdate of every answer: how long an IdP may cache a good status.",
)
@click.option("--log-level", default="info", show_default=True)
def ocsp_responder_command(
    directory: Path,
    host: str | None,
    port: int | None,
    next_update_seconds: int,
    log_level: str,
) -> None:
    """Serve OCSP (POST and GET /ocsp) and the CRLs (/crl/…) for the TEST PKI."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    pki = _load(directory, "--dir")
    url = published_url(pki.directory)
    published = urllib.parse.urlsplit(url or DEFAULT_REVOCATION_URL)
    host = host or published.hostname or "127.0.0.1"
    port = port or published.port or 80
    click.echo(f"TEST OCSP responder on http://{host}:{port}/ocsp, CRLs under /crl/", err=True)
    click.echo(f"  cards of {_show_path(pki.directory)} point at {url or 'nothing'}", err=True)
    try:
        serve(pki, host, port, next_update=dt.timedelta(seconds=next_update_seconds))
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc


def register_revocation_commands(pki_group: click.Group, card_group: click.Group) -> None:
    """Add ``crl`` and ``ocsp-responder`` to ``pki_group`` and ``revoke`` to ``card_group``."""
    pki_group.add_command(crl_command)
    pki_group.add_command(ocsp_responder_command)
    card_group.add_command(revoke_command)

"""``idp metadata …`` (validate, aggregate) and ``idp keys rollover …``: the integrator's and
operator's commands for federation metadata and the SAML signing key."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import sys
from pathlib import Path

import click

from idp.config import Settings
from idp.db import Database, create_schema
from idp.federation.aggregate import DEFAULT_VALIDITY, build_aggregate, metadata_files
from idp.federation.checks import Report, validate_metadata
from idp.federation.document import DEFAULT_MAX_BYTES, MetadataDocumentError
from idp.federation.idp_metadata import CACHE_DURATION
from idp.federation.oidc_client_report import oidc_client_report
from idp.oidc.clients import find_client
from idp.saml.integration_guide import DOCUMENTED_ENTITY_ID, integration_markdown
from idp.saml.rollover import (
    RolloverError,
    finish_rollover,
    signing_keys,
    start_rollover,
)


@click.group("metadata")
def metadata_group() -> None:
    """SAML federation metadata: check an SP's metadata, build a signed aggregate."""


@metadata_group.command("integration-guide")
@click.option("--entity-id", default=DOCUMENTED_ENTITY_ID, show_default=True)
def integration_guide_command(entity_id: str) -> None:
    """Print the integrators' guide as Markdown (the repository keeps it as docs/INTEGRATION.md;
    the IdP serves it at /saml/integration)."""
    click.echo(integration_markdown(entity_id), nl=False)


@metadata_group.command("validate")
@click.argument("source")
@click.option(
    "--federation-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Require a signature and verify it with this pinned certificate (PEM).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text lines.")
@click.option("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, show_default=True)
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Trust this CA for an https SOURCE (default: the system's CAs).",
)
def validate_command(
    source: str, federation_cert: Path | None, as_json: bool, max_bytes: int, ca_file: Path | None
) -> None:
    """Check the metadata in SOURCE (a file or an https URL): one line a check.

    Exits 1 if any check failed. ACS locations are judged as the IdP judges them, with
    the same ``IDP_ALLOW_HTTP_LOOPBACK_ACS`` setting.
    """
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
    )
    report = validate_metadata(
        source,
        federation_cert=federation_cert,
        max_bytes=max_bytes,
        verify=verify,
        allow_http_loopback_acs=Settings().allow_http_loopback_acs,
    )
    _print_report(report, as_json)
    sys.exit(0 if report.ok else 1)


@metadata_group.command("aggregate")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--cert", "cert_file", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_file", required=True, type=click.Path(path_type=Path))
@click.option(
    "--valid-hours",
    type=float,
    default=DEFAULT_VALIDITY.total_seconds() / 3600,
    show_default=True,
    help="validUntil this many hours from now (negative: already expired, for tests).",
)
@click.option("--name", default="", help="The aggregate's Name attribute.")
def aggregate_command(
    directory: Path, key_file: Path, cert_file: Path, out_file: Path, valid_hours: float, name: str
) -> None:
    """Sign every *.xml EntityDescriptor in DIRECTORY into one EntitiesDescriptor."""
    sources = metadata_files(directory)
    if not sources:
        raise click.ClickException(f"no *.xml files in {directory}")
    valid_until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=valid_hours)
    try:
        document = build_aggregate(
            sources, key_file=key_file, cert_file=cert_file, valid_until=valid_until, name=name
        )
    except MetadataDocumentError as exc:
        raise click.ClickException(f"{exc.reason}: {exc.detail}") from exc
    temporary = out_file.with_name(f".{out_file.name}.tmp")
    temporary.write_bytes(document)
    # Rename: a server publishing the file never serves half an aggregate.
    temporary.replace(out_file)
    click.echo(f"{out_file}: {len(sources)} file(s), valid until {valid_until:%Y-%m-%dT%H:%M:%SZ}")


@click.command("check")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text lines.")
def oidc_client_check(client_id: str, as_json: bool) -> None:
    """Check a registered OIDC client: one line a check; exit 1 if any failed."""
    database = Database(Settings().database_url)
    create_schema(database.engine)
    with database.session() as session:
        client = find_client(session, client_id)
    if client is None:
        raise click.ClickException(f"no client {client_id}")
    report = oidc_client_report(client)
    _print_report(report, as_json)
    sys.exit(0 if report.ok else 1)


def _print_report(report: Report, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        return
    for check in report.checks:
        click.echo(check.line())
    click.echo(
        f"{'OK' if report.ok else 'FAILED'}: {len(report.checks)} checks, "
        f"{len(report.failed())} failed"
    )


@click.group("keys")
def keys_group() -> None:
    """The IdP's SAML signing key."""


@keys_group.group("rollover")
def rollover_group() -> None:
    """Roll the SAML signing key over: start (publish the next key), finish (sign with it)."""


@rollover_group.command("start")
@click.option("--key", "key_file", type=click.Path(exists=True, path_type=Path))
@click.option("--cert", "cert_file", type=click.Path(exists=True, path_type=Path))
def rollover_start(key_file: Path | None, cert_file: Path | None) -> None:
    """Publish the next key beside the current one (default: the PKI's saml-signing-next)."""
    if (key_file is None) != (cert_file is None):
        raise click.UsageError("--key and --cert go together")
    try:
        keys = start_rollover(Settings(), key_file, cert_file)
    except (RolloverError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"signing with:  {keys.cert_file}")
    click.echo(f"published next: {keys.next_cert_file}")
    click.echo(f"finish no earlier than {CACHE_DURATION} from now (the metadata cache period)")


@rollover_group.command("finish")
@click.option("--force", is_flag=True, help="Finish before the metadata cache period has passed.")
def rollover_finish(force: bool) -> None:
    """Sign with the next key and stop publishing the old one."""
    try:
        keys = finish_rollover(Settings(), min_wait=dt.timedelta(0) if force else CACHE_DURATION)
    except RolloverError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"signing with: {keys.cert_file}")


@rollover_group.command("status")
def rollover_status() -> None:
    """Which key signs, and which is published as the next one."""
    keys = signing_keys(Settings())
    click.echo(f"signing with: {keys.cert_file}")
    click.echo(f"next:         {keys.next_cert_file or '(no rollover under way)'}")

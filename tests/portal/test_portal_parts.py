"""The portal's smaller parts: its migrations, role grants, the demo's SMTP sink, and what
happens when the IdP's directory or Treserva cannot be reached (nothing is lost, it is told)."""

from __future__ import annotations

import email
import email.policy
import json
import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect, select

from portal import audit, idp_directory, orders, roles, treserva_steps
from portal.cli import main as portal_cli
from portal.config import Settings
from portal.db import Database, downgrade_schema, upgrade_schema
from portal.mail_sink import start_sink
from portal.models import ISSUED, AuditEvent, Base, Order
from portal.refusals import Refused
from siths_testkit.pki import TestPki
from siths_testkit.pki.tokens import token_objects
from tests.helpers.support import VENV_BIN, free_port, run_cli
from tests.helpers.token_cards import PIN, TokenLab
from tests.portal.conftest import EKU, IT, PROVIDER
from tests.portal.test_portal_orders import good


def test_models_and_migrations_agree_and_run_both_ways(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "version_table": "portal_alembic_version"}
        )
        assert compare_metadata(context, Base.metadata) == []
    downgrade_schema(database.engine, "base")
    assert "orders" not in inspect(database.engine).get_table_names()
    upgrade_schema(database.engine)
    assert {"orders", "outbox", "audit_events", "counters"} <= set(
        inspect(database.engine).get_table_names()
    )


def test_role_grants(database: Database) -> None:
    with database.session() as session:
        grant = roles.grant(session, "SE5590000001-X0001", "it_contact", "test", mail="a@b.example")
        assert grant.provider_org == "5590000001"
        for hsa_id, role, why in (
            ("SE5567000010-P0009", "eku_admin", "Göteborgs Stad"),
            ("not-an-id", "it_contact", "does not have the form"),
            ("SE2120001355-E0009", "superuser", "role is one of"),
        ):
            with pytest.raises(roles.RoleError, match=why):
                roles.grant(session, hsa_id, role, "test")


def test_roles_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_VAR_DIR", str(tmp_path))
    runner = CliRunner()
    granted = runner.invoke(portal_cli, ["roles", "grant", EKU, "--role", "eku_admin"])
    assert granted.exit_code == 0, granted.output
    refused = runner.invoke(portal_cli, ["roles", "grant", IT, "--role", "eku_admin"])
    assert refused.exit_code == 1 and "Göteborgs Stad HSA-ID" in refused.output
    listed = runner.invoke(portal_cli, ["roles", "list"])
    assert listed.output.startswith(f"{EKU}\teku_admin")
    with Database(Settings(var_dir=tmp_path).database_url).session() as session:
        assert [e.action for e in session.scalars(select(AuditEvent))] == ["role_granted"]


@pytest.mark.integration  # a real SMTP server on a socket
def test_demo_mail_sink_keeps_each_mail_as_eml(tmp_path: Path) -> None:
    port = free_port()
    sink = start_sink(tmp_path / "mail", "127.0.0.1", port)
    try:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@x.example", "b@y.example", "Hej"
        message.set_content("Innehåll")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.send_message(message)
    finally:
        sink.stop()
    [kept] = list((tmp_path / "mail").glob("*.eml"))
    assert kept.name.endswith("-b@y.example.eml")
    parsed = email.message_from_bytes(kept.read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "Hej" and parsed.get_content().strip() == "Innehåll"


def issued_order(database: Database, settings: Settings) -> int:
    with database.session() as session:
        order = orders.place_order(session, good(1), PROVIDER, IT)
        order = orders.register_case(session, order.id, order.version, EKU)
        order = orders.confirm_order(session, order.id, order.version, EKU)
        order = orders.forward_order(session, settings, order.id, order.version, EKU)
        order.state, order.card_hsa_id = ISSUED, "SE5567000010-P0042"
        return order.id


def test_idp_directory_unreachable_is_retried_and_audited(
    database: Database, settings: Settings, tmp_path: Path
) -> None:
    order_id = issued_order(database, settings)
    broken = settings.model_copy(update={"idp_command": tmp_path / "no-such-idp"})
    assert idp_directory.sync_pending(broken, database.session) == 0
    with database.session() as session:
        assert not session.get(Order, order_id).idp_directory_done
        failed = [
            e for e in audit.events_for(session, order_id) if e.action == "idp_directory_failed"
        ]
        assert "FileNotFoundError" in failed[0].detail
    # The IdP's own CLI, against a directory that has the card's person: now it is done.
    idp_env = {"IDP_VAR_DIR": str(tmp_path / "idp"), "IDP_PKI_DIR": str(tmp_path / "pki")}
    working = settings.model_copy(update={"idp_environment": idp_env})
    first = idp_directory.add_service_id(
        working,
        hsa_id="SE5567000010-P0042",
        given_name="Fatima",
        surname="Fors1",
        mail="",
        same_person_as="SE5567000010-P0042",
    )
    assert not first.ok and "not in the directory" in first.detail
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("hsa_id,given_name,surname\nSE5567000010-P0042,Fatima,Fors1\n")
    assert (
        run_cli([str(VENV_BIN / "idp"), "people", "import", str(csv_file)], idp_env).returncode == 0
    )
    assert idp_directory.sync_pending(working, database.session) == 1
    with database.session() as session:
        order = session.get(Order, order_id)
        assert order.idp_directory_done
    listed = run_cli([str(VENV_BIN / "idp"), "people", "list"], idp_env).stdout
    assert f"{order.hsa_id}\tFatima Fors1\t\tGöteborgs Stad" in listed
    # Once done, nothing more is sent.
    assert idp_directory.sync_pending(working, database.session) == 0
    # An HSA-ID the directory has already may be someone else's: never taken as done.
    again = idp_directory.add_service_id(
        working,
        hsa_id=order.hsa_id,
        given_name="Other",
        surname="Person",
        mail="",
        same_person_as="SE5567000010-P0042",
    )
    assert not again.ok and "already in the directory" in again.detail


def test_treserva_unreachable_leaves_the_order_where_it_was(
    database: Database, settings: Settings, test_pki: TestPki
) -> None:
    order_id = issued_order(database, settings)
    with database.session() as session:
        version = session.get(Order, order_id).version
    unset = settings.model_copy(update={"treserva_token": ""})
    with pytest.raises(Refused) as refused:
        treserva_steps.push_to_treserva(database, unset, order_id, version, IT)
    assert refused.value.reason == "treserva_not_configured"
    no_ca = settings.model_copy(update={"treserva_token": "t"})  # its TLS CA file is missing
    with pytest.raises(Refused) as refused:
        treserva_steps.push_to_treserva(database, no_ca, order_id, version, IT)
    assert refused.value.reason == "treserva_unavailable" and "TLS CA" in refused.value.detail
    down = settings.model_copy(
        update={
            "treserva_token": "t",
            "treserva_url": f"https://127.0.0.1:{free_port()}",
            "tls_ca_file": test_pki.tls_ca_cert,
        }
    )
    with pytest.raises(Refused) as refused:
        treserva_steps.push_to_treserva(database, down, order_id, version, IT)
    assert refused.value.reason == "treserva_unavailable"
    with database.session() as session:
        assert session.get(Order, order_id).state == ISSUED
    assert json.dumps(refused.value.as_dict(), ensure_ascii=False)


@pytest.mark.integration  # the PKCS#11 worker process
def test_card_enrol_command_reports_a_missing_card(tmp_path: Path, test_pki: TestPki) -> None:
    runner = CliRunner()
    answer = runner.invoke(
        portal_cli,
        [
            "card", "enrol", "https://localhost:1/hamta/x", "--token", "9752000000000000001",
            "--pin", "1234", "--softhsm-conf", str(tmp_path),
        ],
    )  # fmt: skip
    assert answer.exit_code == 1
    assert "9752000000000000001" in answer.output
    # A link pasted with a line ending still works; one that names no reachable portal is said.
    lab = TokenLab(test_pki, tmp_path)
    lab.card("9752000000000000001", "SE5567000010-P0555")
    answer = runner.invoke(
        portal_cli,
        [
            "card", "enrol", f"https://127.0.0.1:{free_port()}/hamta/x\r\n", "--token",
            "9752000000000000001", "--pin", PIN, "--softhsm-conf", str(tmp_path),
        ],
    )  # fmt: skip
    assert answer.exit_code == 1, answer.output
    assert "cannot reach the portal" in answer.output
    # Nothing of the attempt stays on the card.
    objects = token_objects(lab.config, "9752000000000000001", PIN)
    assert sorted(o.kind for o in objects) == ["certificate", "private_key", "public_key"]


def test_session_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    first = settings.session_secret_value()
    assert first == Settings(var_dir=tmp_path).session_secret_value() and len(first) == 64
    secret_file = tmp_path / "portal-session-secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["portal-session-secret"]

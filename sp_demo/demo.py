"""``make demo``: the IdP, mock Treserva and the service portal on the embedded default.

Creates the test PKI under ``var/pki`` (once), seeds the directories with invented people,
writes mock Treserva's metadata into ``metadata/sp/``, registers Treserva and the portal as
OpenID Connect clients, puts a demo employee's card on a SoftHSM2 token, starts the servers
(and an SMTP server that keeps the portal's mails as .eml files in ``var/mail``) and prints
where to go. Ctrl-C stops them all.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from siths_testkit.pki import init_test_pki
from siths_testkit.pki.revocation import published_url
from siths_testkit.pki.softhsm import resolve_config, token_exists
from sp_demo.config import Settings as TreservaSettings
from sp_demo.db import LOGIN_WINDOWS, Permission, User, find_user_by_windows_account
from sp_demo.db import Database as TreservaDatabase

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
VAR = REPO_ROOT / "var"
PKI_DIR = VAR / "pki"
DEMO_PEOPLE = REPO_ROOT / "siths_testkit" / "demo_people.csv"
IDP_URL = "https://localhost:8443"
SP_URL = "https://localhost:8445"
PORTAL_URL = "https://localhost:8447"
MAIL_DIR = VAR / "mail"
SMTP_PORT = 8025
# The portal demo's employee of the private provider: her card (a SoftHSM2 token named by its
# card number) carries only her employer's certificate until the portal's step 6.
EMPLOYEE = {
    "hsa_id": "SE5567000010-P0002",
    "given_name": "Greta",
    "surname": "Gran",
    "card_number": "9752000000000000002",
    "windows_account": "OMSORGVAST\\greta.gran",
}
EMPLOYEE_PERMISSIONS = (("undersköterska", "Hemtjänst Väst"), ("dokumentation", "Hemtjänst Väst"))
# Who does what in the portal: Erik Ek (as the provider's SE5567000010-P0001) is its
# IT-kontaktperson, Anna Andersson Göteborgs Stad's Administratör EKU.
PORTAL_IT_CONTACT = "SE5567000010-P0001"
PORTAL_EKU_ADMIN = "SE2120001355-E0001"

ENV = {
    **os.environ,
    "IDP_VAR_DIR": str(VAR),
    "IDP_PKI_DIR": str(PKI_DIR),
    # Every program's state in the checkout's var/ and metadata/, whatever directory the demo is
    # started from (their defaults are relative to the current directory).
    "IDP_SP_METADATA_DIR": str(REPO_ROOT / "metadata" / "sp"),
    "SP_DEMO_VAR_DIR": os.environ.get("SP_DEMO_VAR_DIR", str(VAR)),
    "PORTAL_VAR_DIR": os.environ.get("PORTAL_VAR_DIR", str(VAR)),
    # The demo shows the choice of tjänste-id, so the private provider's HSA-IDs are accepted.
    "IDP_ACCEPTED_ORGANISATIONS": json.dumps(["2120001355", "5567000010"]),
    # Mock Treserva's readiness report checks HSA-IDs against what the IdP's directory holds.
    "SP_DEMO_IDP_DIRECTORY_FILE": os.environ.get("SP_DEMO_IDP_DIRECTORY_FILE", str(DEMO_PEOPLE)),
}
# Erik Ek (chef, two tjänste-id) administers Treserva's permissions in the demo.
DEMO_ADMIN_HSA_ID = "SE2120001355-E0005"


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=ENV, check=True, capture_output=True, text=True)


def wait_until_up(url: str, ca_file: Path, process: subprocess.Popen, log: Path) -> None:
    """Wait for ``url`` to answer; if its process ends first, say why, from its log."""
    context = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-8:]
            cause = "\n    ".join(tail) or "(its log is empty)"
            raise SystemExit(
                f"{url} did not start (exit code {process.returncode}); the end of {log}:\n"
                f"    {cause}"
            )
        try:
            httpx.get(url, verify=context, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within 60 s")


@contextmanager
def ocsp_responder(ca_file: Path, log_path: Path) -> Iterator[str]:
    """Run `idp pki ocsp-responder` for var/pki (the IdP refuses every card without it)."""
    url = published_url(PKI_DIR)
    if not url:
        raise SystemExit(
            f"{PKI_DIR} was created before the test cards carried revocation pointers (OCSP, "
            "CRL); remove it (`make clean`) and run `make demo` again to create a new one."
        )
    with open(log_path, "ab") as log:
        responder = subprocess.Popen(
            [str(BIN / "idp"), "pki", "ocsp-responder", "--dir", str(PKI_DIR)],
            env=ENV,
            stdout=log,
            stderr=log,
        )
        try:
            wait_until_up(f"{url}/health", ca_file, responder, log_path)
            yield url
        finally:
            responder.terminate()
            responder.wait(timeout=10)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def register_oidc_client(
    client_id: str = "treserva-demo", name: str = "Treserva (demo)", base_url: str = SP_URL
) -> str:
    """Register a client at the IdP once; the secret is kept under var/ for later runs."""
    secret_file = VAR / f"{client_id.removesuffix('-demo')}-oidc-secret"
    if secret_file.exists():
        return secret_file.read_text().strip()
    subprocess.run(
        [str(BIN / "idp"), "oidc", "client", "remove", client_id],
        env=ENV,
        capture_output=True,
        check=False,
    )
    added = run(
        str(BIN / "idp"),
        "oidc",
        "client",
        "add",
        client_id,
        "--name",
        name,
        "--redirect-uri",
        f"{base_url}/oidc/callback",
        "--post-logout-redirect-uri",
        f"{base_url}/",
        "--claims",
        "employeeHsaId,given_name,family_name,name",
    )
    secret = next(
        line.split(":", 1)[1].strip()
        for line in added.stdout.splitlines()
        if line.startswith("client_secret:")
    )
    secret_file.write_text(secret)
    secret_file.chmod(0o600)
    return secret


def kept_secret(name: str) -> str:
    """A random secret kept under var/ (created on the first run)."""
    path = VAR / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def prepare_portal() -> None:
    """The portal's settings, roles, and the demo employee (directory, card, Treserva)."""
    integration_token = kept_secret("portal-treserva-token")
    ENV.update(
        {
            "SP_DEMO_SCIM_TOKEN": integration_token,
            "SP_DEMO_PORTAL_URL": PORTAL_URL,
            "PORTAL_TRESERVA_URL": SP_URL,
            "PORTAL_TRESERVA_TOKEN": integration_token,
            "PORTAL_SMTP_PORT": str(SMTP_PORT),
            "PORTAL_OIDC_CLIENT_SECRET": register_oidc_client(
                "portal-demo", "Tjänsteportalen (demo)", PORTAL_URL
            ),
            # The portal tells the IdP's directory about new HSA-IDs with `idp people add`.
            "PORTAL_IDP_ENVIRONMENT": json.dumps(
                {key: value for key, value in ENV.items() if key.startswith("IDP_")}
            ),
        }
    )
    run(
        str(BIN / "portal"), "roles", "grant", PORTAL_IT_CONTACT, "--role", "it_contact",
        "--name", "Erik Ek", "--mail", "it-kontakt@omsorgvast.example.invalid",
    )  # fmt: skip
    run(str(BIN / "portal"), "roles", "grant", PORTAL_EKU_ADMIN, "--role", "eku_admin")
    if EMPLOYEE["hsa_id"] not in run(str(BIN / "idp"), "people", "list").stdout:
        run(
            str(BIN / "idp"), "people", "add", "--hsa-id", EMPLOYEE["hsa_id"],
            "--given-name", EMPLOYEE["given_name"], "--surname", EMPLOYEE["surname"],
            "--organisation", "Omsorgsbolaget Väst AB",
        )  # fmt: skip
    config = resolve_config(None)
    if not token_exists(config, EMPLOYEE["card_number"]):
        run(
            str(BIN / "idp"), "card", "issue", "--hsa-id", EMPLOYEE["hsa_id"],
            "--given-name", EMPLOYEE["given_name"], "--surname", EMPLOYEE["surname"],
            "--token", EMPLOYEE["card_number"], "--pki", str(PKI_DIR),
        )  # fmt: skip
    database = TreservaDatabase(TreservaSettings().database_url)
    with database.session() as session:
        if find_user_by_windows_account(session, EMPLOYEE["windows_account"]) is None:
            session.add(
                User(
                    windows_account=EMPLOYEE["windows_account"],
                    display_name=f"{EMPLOYEE['given_name']} {EMPLOYEE['surname']}",
                    permissions=[
                        Permission(role=role, unit=unit, login=LOGIN_WINDOWS)
                        for role, unit in EMPLOYEE_PERMISSIONS
                    ],
                )
            )
    database.dispose()


def main() -> None:
    step(f"test PKI in {PKI_DIR.relative_to(REPO_ROOT)}")
    pki = init_test_pki(PKI_DIR, progress=lambda text: print(f"    {text}", flush=True))
    if not run(str(BIN / "idp"), "people", "list").stdout.strip():
        step("demo people into the IdP's directory")
        run(str(BIN / "idp"), "people", "import", str(DEMO_PEOPLE))
    step("mock Treserva: users, permissions and SAML metadata")
    run(str(BIN / "sp-demo"), "users", "seed")
    run(str(BIN / "sp-demo"), "users", "grant-admin", DEMO_ADMIN_HSA_ID)
    (REPO_ROOT / "metadata" / "sp").mkdir(parents=True, exist_ok=True)
    run(
        str(BIN / "sp-demo"),
        "metadata",
        "--out",
        str(REPO_ROOT / "metadata" / "sp" / "treserva.xml"),
    )

    step("mock Treserva as an OpenID Connect client of the IdP")
    ENV["SP_DEMO_OIDC_CLIENT_SECRET"] = register_oidc_client()
    step("the service portal: OIDC client, roles, a demo employee with a card on SoftHSM2")
    prepare_portal()

    step("starting the OCSP responder, the IdP, mock Treserva, the portal and its SMTP sink")
    logs = VAR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (
        ocsp_responder(pki.tls_ca_cert, logs / "ocsp-responder.log") as revocation_url,
        open(logs / "idp.log", "ab") as idp_log,
        open(logs / "sp-demo.log", "ab") as sp_log,
        open(logs / "portal.log", "ab") as portal_log,
    ):
        idp = subprocess.Popen([str(BIN / "idp"), "serve"], env=ENV, stdout=idp_log, stderr=idp_log)
        try:
            wait_until_up(f"{IDP_URL}/saml/metadata", pki.tls_ca_cert, idp, logs / "idp.log")
            sp = subprocess.Popen(
                [str(BIN / "sp-demo"), "serve"], env=ENV, stdout=sp_log, stderr=sp_log
            )
            sink = subprocess.Popen(
                [str(BIN / "portal"), "mail-sink", "--dir", str(MAIL_DIR)],
                env=ENV, stdout=portal_log, stderr=portal_log,
            )  # fmt: skip
            portal = subprocess.Popen(
                [str(BIN / "portal"), "serve"], env=ENV, stdout=portal_log, stderr=portal_log
            )
            try:
                wait_until_up(f"{SP_URL}/", pki.tls_ca_cert, sp, logs / "sp-demo.log")
                wait_until_up(f"{PORTAL_URL}/", pki.tls_ca_cert, portal, logs / "portal.log")
                print(
                    f"""
Mock Treserva:            {SP_URL}/
Göteborgs Stads Åtkomsttjänst: {IDP_URL}/   (SAML metadata: {IDP_URL}/saml/metadata)
Tjänsteportalen (certificate and HSA-ID orders): {PORTAL_URL}/

In your browser, trust the test TLS CA {pki.tls_ca_cert.relative_to(REPO_ROOT)}
and import a test card as your client certificate, e.g.
{pki.cards["anna"].p12.relative_to(REPO_ROOT)} (password 1234; Anna Andersson, SE2120001355-E0001)
or {pki.cards["erik"].p12.relative_to(REPO_ROOT)} (Erik Ek, who holds two tjänste-id).
Erik Ek (as SE2120001355-E0005) administers Treserva at {SP_URL}/admin: readiness report,
HSA-IDs, moving permissions, CSV import/export. The Windows login (password "windows") closes
on SP_DEMO_CUTOVER_DATE (default 2024-03-01): set a later date to rehearse the cut-over.
Log out at the IdP (and every application): {IDP_URL}/saml/logout.
Revocation (OCSP and CRLs) is served at {revocation_url}; report a card lost with
  .venv/bin/idp card revoke SE2120001355-E0002 --reason keyCompromise --pki var/pki
and the IdP refuses it within a minute (the responder's nextUpdate).

The portal, all eight steps for Greta Gran (card {EMPLOYEE["card_number"]} on SoftHSM2):
 1. Log in at {PORTAL_URL}/ with Erik's card, choose {PORTAL_IT_CONTACT}; order for card
    {EMPLOYEE["card_number"]}, Greta Gran, any e-mail,
    Windows account {EMPLOYEE["windows_account"]}.
 2-5. Log in with Anna's card (Administratör EKU): register, confirm (HSA-ID), forward.
    Mails land as .eml files in {MAIL_DIR.relative_to(REPO_ROOT)}/ (SMTP 127.0.0.1:{SMTP_PORT}).
 6. Take the link from Greta's mail and fetch the certificate onto her card:
    .venv/bin/portal card enrol '<link>' --token {EMPLOYEE["card_number"]} --pin 1234
 7-8. As Erik: "Lägg in HSA-ID i Treserva", then "Anmäl flytt av behörigheter"; as Anna carry
    out the ticket. The readiness board: {PORTAL_URL}/beredskap.
 Then Greta logs in to Treserva with the app on her card, choosing her Göteborg tjänste-id:
    choose "SITHS eID på annan enhet" and give the app the page's autostart token:
    .venv/bin/idp app login --token {EMPLOYEE["card_number"]} --hsa-id {EMPLOYEE["hsa_id"]} \\
        --pin 1234 --autostart <token>
Logs: var/logs/. Press Ctrl-C to stop.""",
                    flush=True,
                )
                try:
                    while idp.poll() is None and sp.poll() is None and portal.poll() is None:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
            finally:
                for process in (portal, sink, sp):
                    process.terminate()
                    process.wait(timeout=10)
        finally:
            idp.terminate()
            idp.wait(timeout=10)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    main()

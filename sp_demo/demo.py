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
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from siths_testkit.pki import TestPki, init_test_pki
from siths_testkit.pki.revocation import published_url
from siths_testkit.pki.softhsm import resolve_config, token_exists
from sp_demo.config import Settings as TreservaSettings
from sp_demo.db import LOGIN_WINDOWS, Permission, User, find_user_by_windows_account
from sp_demo.db import Database as TreservaDatabase
from sp_demo.demo_ports import DemoPorts, demo_environment, ports_in_use

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Every program's state in the checkout's var/ and metadata/ unless IDP_VAR_DIR (and so on) say
# otherwise, whatever directory the demo is started from (the programs' own defaults are
# relative to the current directory).
VAR = Path(os.environ.get("IDP_VAR_DIR") or REPO_ROOT / "var").absolute()
PKI_DIR = Path(os.environ.get("IDP_PKI_DIR") or VAR / "pki").absolute()
SP_METADATA_DIR = Path(
    os.environ.get("IDP_SP_METADATA_DIR") or REPO_ROOT / "metadata" / "sp"
).absolute()
DEMO_PEOPLE = REPO_ROOT / "siths_testkit" / "demo_people.csv"
MAIL_DIR = VAR / "mail"
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
    "IDP_SP_METADATA_DIR": str(SP_METADATA_DIR),
    "SP_DEMO_VAR_DIR": os.environ.get("SP_DEMO_VAR_DIR", str(VAR)),
    "PORTAL_VAR_DIR": os.environ.get("PORTAL_VAR_DIR", str(VAR)),
    "SP_DEMO_PKI_DIR": os.environ.get("SP_DEMO_PKI_DIR", str(PKI_DIR)),
    "PORTAL_PKI_DIR": os.environ.get("PORTAL_PKI_DIR", str(PKI_DIR)),
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
    """Run a set-up command; if it fails, stop the demo with its command line and error."""
    done = subprocess.run(args, env=ENV, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = "\n    ".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise SystemExit(
            f"`{' '.join(args)}` failed (exit code {done.returncode}):\n    {said or '(no output)'}"
        )
    return done


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
def running(command: list[str], log_path: Path) -> Iterator[subprocess.Popen]:
    """Run ``command`` with the demo's settings, its output appended to ``log_path``; stopped
    (SIGTERM, then SIGKILL after 10 s) when the block ends."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, env=ENV, stdout=log, stderr=log)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def ocsp_responder(ports: DemoPorts, ca_file: Path, log_path: Path) -> Iterator[str]:
    """Run `idp pki ocsp-responder` for the PKI on IDP_OCSP_PORT (the IdP refuses every card
    without it); yields where it serves."""
    command = [str(BIN / "idp"), "pki", "ocsp-responder", "--dir", str(PKI_DIR)]
    with running([*command, "--port", str(ports.ocsp)], log_path) as responder:
        wait_until_up(f"{ports.revocation_url}/health", ca_file, responder, log_path)
        yield ports.revocation_url


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def register_oidc_client(client_id: str, name: str, base_url: str) -> str:
    """Register a client at the IdP, redirecting to ``base_url``; its secret is kept under var/
    for later runs, and a new one is registered when ``base_url`` has changed since."""
    kept = VAR / f"{client_id.removesuffix('-demo')}-oidc-client.json"
    if kept.exists():
        registered = json.loads(kept.read_text())
        if registered.get("base_url") == base_url:
            return str(registered["secret"])
    subprocess.run(
        [str(BIN / "idp"), "oidc", "client", "remove", client_id],
        env=ENV,
        capture_output=True,
        check=False,
    )
    added = run(
        str(BIN / "idp"), "oidc", "client", "add", client_id, "--name", name,
        "--redirect-uri", f"{base_url}/oidc/callback",
        "--post-logout-redirect-uri", f"{base_url}/",
        "--claims", "employeeHsaId,given_name,family_name,name",
    )  # fmt: skip
    secret = next(
        line.split(":", 1)[1].strip()
        for line in added.stdout.splitlines()
        if line.startswith("client_secret:")
    )
    kept.write_text(json.dumps({"base_url": base_url, "secret": secret}))
    kept.chmod(0o600)
    return secret


def kept_secret(name: str) -> str:
    """A random secret kept under var/ (created on the first run)."""
    path = VAR / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def configure(ports: DemoPorts) -> None:
    """Every program's ports and the URLs they reach each other by (see :mod:`demo_ports`); the
    IdP asks the demo's OCSP responder when it is not where the PKI's cards point."""
    published = published_url(PKI_DIR).rstrip("/")
    if not published:
        raise SystemExit(
            f"{PKI_DIR} was created before the test cards carried revocation pointers (OCSP, "
            "CRL); remove it (`make clean`) and run `make demo` again to create a new one."
        )
    ENV.update(demo_environment(ports, os.environ))
    if ports.revocation_url != published:
        ENV.setdefault("IDP_REVOCATION_OCSP_URL", f"{ports.revocation_url}/ocsp")


def seed_idp_and_treserva() -> None:
    """The IdP's directory (once), mock Treserva's users and admin, and its SAML metadata."""
    if not run(str(BIN / "idp"), "people", "list").stdout.strip():
        step("demo people into the IdP's directory")
        run(str(BIN / "idp"), "people", "import", str(DEMO_PEOPLE))
    step("mock Treserva: users, permissions and SAML metadata")
    run(str(BIN / "sp-demo"), "users", "seed")
    run(str(BIN / "sp-demo"), "users", "grant-admin", DEMO_ADMIN_HSA_ID)
    SP_METADATA_DIR.mkdir(parents=True, exist_ok=True)
    run(str(BIN / "sp-demo"), "metadata", "--out", str(SP_METADATA_DIR / "treserva.xml"))
    step("mock Treserva as an OpenID Connect client of the IdP")
    ENV["SP_DEMO_OIDC_CLIENT_SECRET"] = register_oidc_client(
        "treserva-demo", "Treserva (demo)", ENV["SP_DEMO_BASE_URL"]
    )


def prepare_portal() -> None:
    """The portal's settings (its OIDC client, Treserva's integration token) and roles."""
    integration_token = kept_secret("portal-treserva-token")
    ENV.update(
        {
            "SP_DEMO_SCIM_TOKEN": integration_token,
            "PORTAL_TRESERVA_TOKEN": integration_token,
            "PORTAL_OIDC_CLIENT_SECRET": register_oidc_client(
                "portal-demo", "Tjänsteportalen (demo)", ENV["PORTAL_BASE_URL"]
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


def prepare_employee() -> None:
    """The demo employee: in the IdP's directory, on a SoftHSM2 card, and in Treserva."""
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
    database = TreservaDatabase(TreservaSettings(var_dir=Path(ENV["SP_DEMO_VAR_DIR"])).database_url)
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


def print_guide(pki: TestPki, ports: DemoPorts, revocation_url: str) -> None:
    """Where to go, with the URLs the programs were given."""
    idp_url, sp_url, portal_url = (
        ENV[name] for name in ("IDP_BASE_URL", "SP_DEMO_BASE_URL", "PORTAL_BASE_URL")
    )
    print(
        f"""
Mock Treserva:            {sp_url}/
Göteborgs Stads Åtkomsttjänst: {idp_url}/   (SAML metadata: {idp_url}/saml/metadata)
Tjänsteportalen (certificate and HSA-ID orders): {portal_url}/

In your browser, trust the test TLS CA {_shown(pki.tls_ca_cert)}
and import a test card as your client certificate, e.g.
{_shown(pki.cards["anna"].p12)} (password 1234; Anna Andersson, SE2120001355-E0001)
or {_shown(pki.cards["erik"].p12)} (Erik Ek, who holds two tjänste-id).
Erik Ek (as SE2120001355-E0005) administers Treserva at {sp_url}/admin: readiness report,
HSA-IDs, moving permissions, CSV import/export. The Windows login (password "windows") closes
on SP_DEMO_CUTOVER_DATE (default 2024-03-01): set a later date to rehearse the cut-over.
Log out at the IdP (and every application): {idp_url}/saml/logout.
Revocation (OCSP and CRLs) is served at {revocation_url}; report a card lost with
  .venv/bin/idp card revoke SE2120001355-E0002 --reason keyCompromise --pki {_shown(PKI_DIR)}
and the IdP refuses it within a minute (the responder's nextUpdate).

The portal, all eight steps for Greta Gran (card {EMPLOYEE["card_number"]} on SoftHSM2):
 1. Log in at {portal_url}/ with Erik's card, choose {PORTAL_IT_CONTACT}; order for card
    {EMPLOYEE["card_number"]}, Greta Gran, any e-mail,
    Windows account {EMPLOYEE["windows_account"]}.
 2-5. Log in with Anna's card (Administratör EKU): register, confirm (HSA-ID), forward.
    Mails land as .eml files in {_shown(MAIL_DIR)}/ (SMTP 127.0.0.1:{ports.smtp}).
 6. Take the link from Greta's mail and fetch the certificate onto her card:
    .venv/bin/portal card enrol '<link>' --token {EMPLOYEE["card_number"]} --pin 1234
 7-8. As Erik: "Lägg in HSA-ID i Treserva", then "Anmäl flytt av behörigheter"; as Anna carry
    out the ticket. The readiness board: {portal_url}/beredskap.
 Then Greta logs in to Treserva with the app on her card, choosing her Göteborg tjänste-id:
    choose "SITHS eID på annan enhet" and give the app the page's autostart token:
    .venv/bin/idp app login --token {EMPLOYEE["card_number"]} --hsa-id {EMPLOYEE["hsa_id"]} \\
        --pin 1234 --autostart <token>
Logs: {_shown(VAR / "logs")}/. Press Ctrl-C to stop.""",
        flush=True,
    )


def _shown(path: Path) -> Path:
    """``path`` relative to the checkout when it lies inside it."""
    return path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path


def serve(pki: TestPki, ports: DemoPorts) -> None:
    """Start the OCSP responder, the IdP, mock Treserva, the SMTP sink and the portal, print the
    guide and wait for Ctrl-C (or a server to stop); stops them all, the IdP last."""
    logs = VAR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ca = pki.tls_ca_cert
    with ExitStack() as stack:
        revocation_url = stack.enter_context(ocsp_responder(ports, ca, logs / "ocsp-responder.log"))
        idp = stack.enter_context(running([str(BIN / "idp"), "serve"], logs / "idp.log"))
        wait_until_up(f"https://localhost:{ports.idp}/saml/metadata", ca, idp, logs / "idp.log")
        sp = stack.enter_context(running([str(BIN / "sp-demo"), "serve"], logs / "sp-demo.log"))
        sink = [str(BIN / "portal"), "mail-sink", "--dir", str(MAIL_DIR), "--port", str(ports.smtp)]
        stack.enter_context(running(sink, logs / "portal.log"))
        portal = stack.enter_context(running([str(BIN / "portal"), "serve"], logs / "portal.log"))
        wait_until_up(f"https://localhost:{ports.treserva}/", ca, sp, logs / "sp-demo.log")
        wait_until_up(f"https://localhost:{ports.portal}/", ca, portal, logs / "portal.log")
        print_guide(pki, ports, revocation_url)
        try:
            while all(process.poll() is None for process in (idp, sp, portal)):
                time.sleep(1)
        except KeyboardInterrupt:
            pass


def main() -> None:
    ports = DemoPorts.from_environment(os.environ, published_url(PKI_DIR))
    taken = ports_in_use(ports, os.environ)
    if taken:
        raise SystemExit(
            "make demo did not start: " + "; ".join(taken) + ". Stop what holds it or set "
            "that variable to a free port (README: make demo)."
        )
    step(f"test PKI in {_shown(PKI_DIR)}")
    pki = init_test_pki(
        PKI_DIR,
        progress=lambda text: print(f"    {text}", flush=True),
        revocation_url=ports.revocation_url,
    )
    configure(ports)
    seed_idp_and_treserva()
    step("the service portal: OIDC client, roles, a demo employee with a card on SoftHSM2")
    prepare_portal()
    prepare_employee()
    step("starting the OCSP responder, the IdP, mock Treserva, the portal and its SMTP sink")
    serve(pki, ports)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    main()

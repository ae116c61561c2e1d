"""``make demo``: the IdP and mock Treserva on the embedded default, side by side.

Creates the test PKI under ``var/pki`` (once), seeds both directories with invented people,
writes mock Treserva's metadata into ``metadata/sp/``, starts both servers and prints where to
go. Ctrl-C stops both.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from idp.pki import init_test_pki
from idp.pki.revocation import published_url

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
VAR = REPO_ROOT / "var"
PKI_DIR = VAR / "pki"
DEMO_PEOPLE = REPO_ROOT / "idp" / "directory" / "demo_people.csv"
IDP_URL = "https://localhost:8443"
SP_URL = "https://localhost:8445"

ENV = {
    **os.environ,
    "IDP_VAR_DIR": str(VAR),
    "IDP_PKI_DIR": str(PKI_DIR),
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


def wait_until_up(url: str, ca_file: Path, process: subprocess.Popen) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} did not start (exit code {process.returncode})")
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
            wait_until_up(f"{url}/health", ca_file, responder)
            yield url
        finally:
            responder.terminate()
            responder.wait(timeout=10)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def register_oidc_client() -> str:
    """Register mock Treserva at the IdP once; the secret is kept under var/ for later runs."""
    secret_file = VAR / "treserva-oidc-secret"
    if secret_file.exists():
        return secret_file.read_text().strip()
    subprocess.run(
        [str(BIN / "idp"), "oidc", "client", "remove", "treserva-demo"],
        env=ENV,
        capture_output=True,
        check=False,
    )
    added = run(
        str(BIN / "idp"),
        "oidc",
        "client",
        "add",
        "treserva-demo",
        "--name",
        "Treserva (demo)",
        "--redirect-uri",
        f"{SP_URL}/oidc/callback",
        "--post-logout-redirect-uri",
        f"{SP_URL}/",
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

    step("starting the OCSP responder, the IdP and mock Treserva")
    logs = VAR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (
        ocsp_responder(pki.tls_ca_cert, logs / "ocsp-responder.log") as revocation_url,
        open(logs / "idp.log", "ab") as idp_log,
        open(logs / "sp-demo.log", "ab") as sp_log,
    ):
        idp = subprocess.Popen([str(BIN / "idp"), "serve"], env=ENV, stdout=idp_log, stderr=idp_log)
        try:
            wait_until_up(f"{IDP_URL}/saml/metadata", pki.tls_ca_cert, idp)
            sp = subprocess.Popen(
                [str(BIN / "sp-demo"), "serve"], env=ENV, stdout=sp_log, stderr=sp_log
            )
            try:
                wait_until_up(f"{SP_URL}/", pki.tls_ca_cert, sp)
                print(
                    f"""
Mock Treserva:            {SP_URL}/
Göteborgs Stads Åtkomsttjänst: {IDP_URL}/   (SAML metadata: {IDP_URL}/saml/metadata)

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
Logs: var/logs/. Press Ctrl-C to stop.""",
                    flush=True,
                )
                try:
                    while idp.poll() is None and sp.poll() is None:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
            finally:
                sp.terminate()
                sp.wait(timeout=10)
        finally:
            idp.terminate()
            idp.wait(timeout=10)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    main()

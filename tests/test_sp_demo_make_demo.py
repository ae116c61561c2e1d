"""``make demo`` (sp_demo/demo.py) on the ports the settings name, not its defaults.

The supervisor runs as ``make demo`` runs it (``python -m sp_demo.demo``) with every port a
free one of this machine's and its state in a temporary directory (the session's test PKI
copied in, so no keys are generated). Anna logs in to mock Treserva with her card at the URLs
the demo prints, the portal answers at its printed URL, and SIGTERM stops every program (all
the ports are free again). A port already taken is refused before anything starts, naming the
setting to change. sp_demo/demo_ports.py's parsing and URL derivation are checked directly.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from siths_testkit.pki import TestPki
from sp_demo.demo import wait_until_up
from sp_demo.demo_ports import DEFAULTS, DemoPorts, demo_environment, ports_in_use
from tests.helpers.flows import login_with_card, posted_form
from tests.helpers.support import browser, free_port

READY_LINE = "Press Ctrl-C to stop."
SYSTEM_CA_FILE = Path("/etc/ssl/certs/ca-certificates.crt")
# The programs' own settings, so none of the test run's environment leaks into the demo's.
SETTING_PREFIXES = ("IDP_", "SP_DEMO_", "PORTAL_", "SOFTHSM2_CONF")


def demo_env(work: Path, ports: DemoPorts, pki_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    env.update({name: str(port) for name, port in ports.by_setting().items()})
    env.update(
        {
            "IDP_VAR_DIR": str(work / "var"),
            "IDP_PKI_DIR": str(pki_dir),
            "IDP_SP_METADATA_DIR": str(work / "metadata"),
        }
    )
    return env


def free_ports() -> DemoPorts:
    chosen: set[int] = set()
    while len(chosen) < 6:
        chosen.add(free_port())
    idp, cert, treserva, portal, smtp, ocsp = sorted(chosen)
    return DemoPorts(idp, cert, treserva, portal, smtp, ocsp)


@dataclass
class RunningDemo:
    process: subprocess.Popen
    output: list[str]

    def text(self) -> str:
        return "".join(self.output)

    def printed_url(self, label: str) -> str:
        match = re.search(rf"^{re.escape(label)}:?\s+(https://\S+?)/(?:\s|$)", self.text(), re.M)
        assert match, f"{label} not printed:\n{self.text()}"
        return match.group(1)


def start_demo(work: Path, env: dict[str, str]) -> RunningDemo:
    process = subprocess.Popen(
        [sys.executable, "-m", "sp_demo.demo"],
        cwd=work,  # SoftHSM2's tokens go under ./var/softhsm
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    demo = RunningDemo(process, [])
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: demo.output.extend(process.stdout), daemon=True)
    reader.start()
    return demo


@pytest.fixture(scope="module")
def demo(
    test_pki: TestPki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningDemo, DemoPorts, TestPki]]:
    work = tmp_path_factory.mktemp("make-demo")
    pki_dir = work / "pki"
    shutil.copytree(test_pki.directory, pki_dir)
    ports = free_ports()
    running = start_demo(work, demo_env(work, ports, pki_dir))
    deadline = time.monotonic() + 240
    while READY_LINE not in running.text():
        assert running.process.poll() is None, f"the demo stopped:\n{running.text()}"
        assert time.monotonic() < deadline, f"the demo did not come up:\n{running.text()}"
        time.sleep(0.5)
    try:
        yield running, ports, test_pki
    finally:
        if running.process.poll() is None:
            running.process.send_signal(signal.SIGTERM)
            try:
                running.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                running.process.kill()


def test_the_demo_prints_the_urls_of_the_ports_it_was_given(demo) -> None:
    running, ports, _pki = demo
    assert running.printed_url("Mock Treserva") == f"https://localhost:{ports.treserva}"
    assert running.printed_url("Göteborgs Stads Åtkomsttjänst") == f"https://localhost:{ports.idp}"
    assert (
        running.printed_url("Tjänsteportalen (certificate and HSA-ID orders)")
        == f"https://localhost:{ports.portal}"
    )
    assert f"SMTP 127.0.0.1:{ports.smtp}" in running.text()
    assert f"Revocation (OCSP and CRLs) is served at http://127.0.0.1:{ports.ocsp};" in (
        running.text()
    )


def test_anna_logs_in_to_treserva_at_the_printed_urls(demo) -> None:
    running, _ports, pki = demo
    treserva = running.printed_url("Mock Treserva")
    idp = running.printed_url("Göteborgs Stads Åtkomsttjänst")
    card = (pki.cards["anna"].cert, pki.cards["anna"].key)
    with browser(pki.tls_ca_cert, card) as client:
        started = client.get(f"{treserva}/login")
        assert started.status_code == 303, started.text
        assert started.headers["location"].startswith(f"{idp}/saml/sso/redirect?")
        # Through the certificate login on IDP_CERT_PORT, and the OCSP responder on
        # IDP_OCSP_PORT (the IdP fails closed without an answer).
        final = login_with_card(client, started.headers["location"], idp)
        assert final.status_code == 200, final.text
        action, fields = posted_form(final)
        assert action == f"{treserva}/saml/acs"
        answered = client.post(action, data=fields)
        assert answered.status_code == 303, answered.text
        page = client.get(f"{treserva}/me")
    assert page.status_code == 200, page.text
    assert '<dd id="name">Anna Andersson</dd>' in page.text


def test_the_portal_answers_at_its_printed_url_and_logs_in_at_the_idp(demo) -> None:
    running, _ports, pki = demo
    portal = running.printed_url("Tjänsteportalen (certificate and HSA-ID orders)")
    idp = running.printed_url("Göteborgs Stads Åtkomsttjänst")
    with browser(pki.tls_ca_cert) as client:
        assert client.get(f"{portal}/").status_code == 200
        login = client.get(f"{portal}/login")
    assert login.status_code in (302, 303), login.text
    assert login.headers["location"].startswith(f"{idp}/")
    assert (
        f"redirect_uri={portal}/oidc/callback".replace(":", "%3A").replace("/", "%2F")
        in (login.headers["location"])
    )


def test_sigterm_stops_every_program_of_the_demo(demo) -> None:
    running, ports, _pki = demo
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=60) == 0, running.text()
    assert ports_in_use(ports, {}) == []


@pytest.mark.integration  # starts the demo's process
def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    ports = free_ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports.idp_cert))
        holder.listen()
        env = demo_env(tmp_path, ports, tmp_path / "pki")
        finished = subprocess.run(
            [sys.executable, "-m", "sp_demo.demo"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert finished.returncode == 1
    assert (
        f"port {ports.idp_cert} on 127.0.0.1 (IDP_CERT_PORT) is already in use" in finished.stderr
    )
    assert not (tmp_path / "pki").exists()
    assert not (tmp_path / "var").exists()


@pytest.mark.integration  # starts a process
def test_a_server_that_exits_at_start_is_reported_with_the_end_of_its_log(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    with open(log_path, "ab") as log:
        exits = subprocess.Popen(
            [sys.executable, "-c", "import sys; print('[Errno 98] address in use'); sys.exit(3)"],
            stdout=log,
            stderr=log,
        )
        exits.wait(timeout=30)
    with pytest.raises(SystemExit) as refused:
        # Any CA file will do: the process has ended before anything is asked.
        wait_until_up("https://localhost:1/", SYSTEM_CA_FILE, exits, log_path)
    assert str(refused.value) == (
        f"https://localhost:1/ did not start (exit code 3); the end of {log_path}:\n"
        "    [Errno 98] address in use"
    )


def test_ports_come_from_the_settings_and_default_to_the_programs_own() -> None:
    assert DemoPorts.from_environment({}, "").by_setting() == DEFAULTS
    ports = DemoPorts.from_environment({"IDP_PORT": "9443", "PORTAL_SMTP_PORT": "2525"}, "")
    assert (ports.idp, ports.idp_cert, ports.smtp) == (9443, 8444, 2525)
    # An existing PKI's cards point at its responder: that port is the default.
    assert DemoPorts.from_environment({}, "http://127.0.0.1:18480").ocsp == 18480
    assert DemoPorts.from_environment({"IDP_OCSP_PORT": "9480"}, "http://127.0.0.1:18480").ocsp == (
        9480
    )


@pytest.mark.parametrize("value", ["84x3", "0", "70000", "-1"])
def test_a_port_that_is_no_port_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(SystemExit, match=f"SP_DEMO_PORT={value!r} is not a port number"):
        DemoPorts.from_environment({"SP_DEMO_PORT": value}, "")


def test_the_urls_follow_the_ports_unless_set() -> None:
    ports = DemoPorts(9443, 9444, 9445, 9447, 2525, 9480)
    env = demo_environment(ports, {})
    assert env["IDP_BASE_URL"] == "https://localhost:9443"
    assert env["IDP_CERT_LOGIN_URL"] == "https://localhost:9444"
    assert env["SP_DEMO_BASE_URL"] == env["PORTAL_TRESERVA_URL"] == "https://localhost:9445"
    assert env["PORTAL_BASE_URL"] == env["SP_DEMO_PORTAL_URL"] == "https://localhost:9447"
    assert env["SP_DEMO_IDP_METADATA_URL"] == "https://localhost:9443/saml/metadata"
    assert env["SP_DEMO_OIDC_ISSUER"] == env["PORTAL_OIDC_ISSUER"] == "https://localhost:9443"
    assert (env["IDP_PORT"], env["PORTAL_SMTP_PORT"], env["IDP_OCSP_PORT"]) == (
        "9443",
        "2525",
        "9480",
    )
    assert ports.revocation_url == "http://127.0.0.1:9480"
    kept = demo_environment(ports, {"IDP_BASE_URL": "https://idp.example.test/"})
    assert kept["IDP_BASE_URL"] == kept["PORTAL_OIDC_ISSUER"] == "https://idp.example.test"
    assert kept["SP_DEMO_IDP_METADATA_URL"] == "https://idp.example.test/saml/metadata"

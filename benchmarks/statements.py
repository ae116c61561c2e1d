"""SQL statements and transactions per card login, per request, counted inside the node.

    .venv/bin/python benchmarks/statements.py [--logins 20] [--postgres] [--show]

One IdP node (embedded: HTTPS + the certificate listener, SQLite; or on a throwaway
PostgreSQL with ``--postgres``) runs in this process, so SQLAlchemy's engine events see every
statement it sends; a throwaway test PKI and the real ``idp pki ocsp-responder`` as in
``harness.py``. One browser at a time (``browser.py``: new cookies and connections per login)
makes complete card logins: the SP's redirect → the chooser → the card listener →
``/login/continue`` → the page posting the Response. Requests are sequential and the sweeper is
off, so each statement belongs to the request that was being answered.

Printed: statements and transactions per login (the first login fills the OCSP cache and is
left out), per request, and with ``--show`` the statements of the last login.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from browser import Answer, Browser
from sqlalchemy import event

from idp.app import create_app
from idp.config import Settings
from idp.server.run import NodeProcess, run_node
from siths_testkit.local_cluster import start_postgres


@dataclass
class StatementLog:
    """What the engine sent, in order: each statement, and a marker at each transaction."""

    statements: list[str] = field(default_factory=list)
    transactions: int = 0

    def attach(self, engine) -> None:  # type: ignore[no-untyped-def]
        @event.listens_for(engine, "before_cursor_execute")
        def _statement(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
            self.statements.append(" ".join(statement.split()))

        @event.listens_for(engine, "begin")
        def _begin(_conn) -> None:  # type: ignore[no-untyped-def]
            self.transactions += 1


@dataclass
class Step:
    path: str
    statements: list[str]
    transactions: int


class CountingBrowser(Browser):
    """A :class:`Browser` that notes what the node sent to the database for each request."""

    def __init__(self, context: ssl.SSLContext, log: StatementLog) -> None:
        super().__init__(context)
        self.log = log
        self.steps: list[Step] = []

    def get(self, url: str) -> Answer:
        before, transactions = len(self.log.statements), self.log.transactions
        answer = super().get(url)
        path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        self.steps.append(
            Step(
                "/" + path,
                self.log.statements[before:],
                self.log.transactions - transactions,
            )
        )
        return answer


def start_node(work: Path, lab: harness.Lab, postgres_url: str | None) -> tuple[str, dict]:
    work.mkdir(parents=True)
    port, cert_port = harness.free_port(), harness.free_port()
    base_url, cert_login_url = f"https://localhost:{port}", f"https://localhost:{cert_port}"
    env = {
        **harness._common_env(lab, work, base_url, cert_login_url),
        "IDP_VAR_DIR": str(work / "var"),
        "IDP_PORT": str(port),
        "IDP_CERT_PORT": str(cert_port),
    }
    if postgres_url:
        env["IDP_DATABASE_URL"] = postgres_url
        harness._run([str(harness.BIN / "idp"), "db", "upgrade"], env)
    harness._run([str(harness.BIN / "idp"), "people", "import", str(lab.people_csv)], env)
    os.environ.update(env)
    return base_url, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=20)
    parser.add_argument("--postgres", action="store_true", help="a PostgreSQL node, not SQLite")
    parser.add_argument("--show", action="store_true", help="print the last login's statements")
    args = parser.parse_args()
    with harness.workspace() as work:
        lab = harness.make_lab(work / "lab")
        postgres = start_postgres(harness.free_port()) if args.postgres else None
        try:
            base_url, env = start_node(work / "node", lab, postgres.url if postgres else None)
            settings = Settings()
            app = create_app(settings)
            log = StatementLog()
            log.attach(app.state.services.database.engine)
            started = threading.Event()
            node = NodeProcess(sweep=False, on_started=started.set)
            threading.Thread(
                target=run_node, args=(app, settings, "warning", node), daemon=True
            ).start()
            if not started.wait(60):
                raise SystemExit("the node did not start")
            sp = harness._attach_sp(work / "node", base_url, lab.pki.tls_ca_cert, env)
            report(measure(sp, lab, args.logins, log), args, settings.database_url)
        finally:
            if postgres is not None:
                postgres.stop()
            lab.stop()


def measure(sp, lab: harness.Lab, logins: int, log: StatementLog) -> list[list[Step]]:  # type: ignore[no-untyped-def]
    card = lab.pki.cards["anna"]
    context = ssl.create_default_context(cafile=str(lab.pki.tls_ca_cert))
    context.load_cert_chain(str(card.cert), str(card.key))
    done: list[list[Step]] = []
    for _ in range(logins + 1):
        url, request_id = sp.login_url()
        with CountingBrowser(context, log) as browser:
            login = browser.login(url)
        in_response_to, status, _hsa_id = harness.response_facts(login.saml_response)
        if in_response_to != request_id or status != harness.SUCCESS:
            raise SystemExit(f"a login failed: {in_response_to} {status}")
        done.append(browser.steps)
    return done[1:]  # the first filled the OCSP cache


def report(logins: list[list[Step]], args: argparse.Namespace, database_url: str) -> None:
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"{len(logins)} card logins, one at a time, {backend} ({database_url.split(':')[0]})")
    per_login = Counter((sum(len(s.statements) for s in steps), sum(s.transactions for s in steps))
                        for steps in logins)  # fmt: skip
    for (statements, transactions), count in sorted(per_login.items()):
        print(f"  {count:3d} logins: {statements} statements in {transactions} transactions")
    print("per request (last login):")
    for step in logins[-1]:
        kinds = Counter(s.split(" ", 1)[0] for s in step.statements)
        described = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"
        print(f"  {step.path:32s} {len(step.statements):2d} statements, "
              f"{step.transactions} transactions ({described})")  # fmt: skip
    if args.show:
        for step in logins[-1]:
            print(f"\n{step.path}")
            for statement in step.statements:
                print(f"    {statement[:200]}")


if __name__ == "__main__":
    main()

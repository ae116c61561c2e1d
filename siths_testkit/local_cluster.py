"""A throwaway PostgreSQL cluster and nginx on loopback, for the multi-node tests and benchmarks.

Both use the Debian packages (``postgresql``, ``nginx``), live in a temporary directory that
:meth:`stop` removes, and are children of the caller that stop when it dies. PostgreSQL
refuses to run as root, so under root (as in CI) the cluster belongs to ``nobody`` and its
programs run as that user; nginx runs its master as the caller and its workers as ``nobody``.
Everything listens on 127.0.0.1 only.

nginx runs the shipped ``docker/nginx/idp.conf.template`` (see :func:`render_template`) inside
a minimal main configuration that only sets paths.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

# Test kit run from a checkout: the repository's own nginx configuration.
REPO_ROOT = Path(__file__).resolve().parents[1]
NGINX_TEMPLATE = REPO_ROOT / "docker" / "nginx" / "idp.conf.template"
_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
UNPRIVILEGED_USER = "nobody"
PR_SET_PDEATHSIG = 1  # linux/prctl.h
STALE_AFTER_SECONDS = 3600


class ClusterError(RuntimeError):
    """A program of the cluster could not be found or started; the message says why."""


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Replace every ``${NAME}`` (upper case, as envsubst would) with ``values[NAME]``.

    Unlike envsubst, a name without a value is an error, not an empty string; nginx's own
    ``$variables`` (lower case, no braces) are left alone.
    """
    missing = sorted({name for name in _PLACEHOLDER.findall(template) if name not in values})
    if missing:
        raise ClusterError(f"no value for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ClusterError(f"{process.args!r} exited: {log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise ClusterError(f"nothing listens on port {port}: {log.read_text(errors='replace')}")


def _private_directory(prefix: str, owner: str | None) -> Path:
    # Under /tmp (not a pytest folder, whose parents are root-only) so that an unprivileged
    # owner can reach it.
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if owner is not None:
        entry = pwd.getpwnam(owner)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    return directory


# --- PostgreSQL -------------------------------------------------------------------------------


def postgres_bin_dir() -> Path:
    """The newest installed server's programs (``/usr/lib/postgresql/<major>/bin``)."""
    versions = sorted(
        (path for path in Path("/usr/lib/postgresql").glob("*/bin") if (path / "initdb").exists()),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1]
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise ClusterError("PostgreSQL is not installed (Debian package: postgresql)")


@dataclass
class PostgresCluster:
    directory: Path
    port: int
    bin_dir: Path
    run_as: str | None
    process: subprocess.Popen | None = None
    database: str = "idp"
    user: str = "idp"
    options: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A SQLAlchemy URL for psycopg 3 (trust authentication on loopback)."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            check=False,
            user=self.run_as,
            # The caller's directory may be closed to the unprivileged user.
            cwd=self.directory,
            timeout=120,
        )

    def start(self, timeout: float = 60) -> None:
        """Run the server on the cluster's data directory (a child of this process, told to
        shut down if this process dies) and wait until it accepts connections."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.directory / "data"), *self.options],
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.run_as,
                cwd=self.directory,
                preexec_fn=_die_with_parent(signal.SIGINT),
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ClusterError(f"postgres exited: {self.log_path.read_text(errors='replace')}")
            try:
                _ask_postgres(self.port, self.user)
                return
            except Exception as exc:  # not accepting connections yet
                if time.monotonic() > deadline:
                    raise ClusterError(f"postgres did not start: {exc}") from exc
                time.sleep(0.05)

    def shutdown(self) -> None:
        """Stop the server (fast shutdown: sessions are ended) and keep its data, so that
        :meth:`start` brings the same database back."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        self.shutdown()
        shutil.rmtree(self.directory, ignore_errors=True)


def _ask_postgres(port: int, user: str, sql: str | None = None) -> None:
    with psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=user,
        dbname="postgres",
        autocommit=True,
        connect_timeout=2,
    ) as connection:
        if sql is not None:
            connection.execute(sql)  # type: ignore[arg-type]


def start_postgres(port: int, *, durable: bool = False) -> PostgresCluster:
    """``initdb`` a new cluster in a temporary directory, start it on 127.0.0.1:``port`` and
    create the database ``idp`` owned by the user ``idp``.

    The server is a child of this process (not daemonised) and is told to shut down if this
    process dies without calling :meth:`PostgresCluster.stop`. ``durable=False`` (tests) turns
    off fsync and synchronous commit: a throwaway cluster need not survive a power cut, and a
    test waits less. Benchmarks pass ``durable=True``.
    """
    _remove_stale("idp-pg-", "data/postmaster.pid")
    run_as = UNPRIVILEGED_USER if os.geteuid() == 0 else None
    directory = _private_directory("idp-pg-", run_as)
    cluster = PostgresCluster(directory, port, postgres_bin_dir(), run_as)
    data = directory / "data"
    result = cluster._run(
        "initdb", "-D", str(data), "-U", cluster.user, "--auth=trust", "-E", "UTF8",
        "--locale=C", "--no-sync",
    )  # fmt: skip
    if result.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise ClusterError(f"initdb failed: {result.stderr}")
    settings = [
        "listen_addresses=127.0.0.1",
        f"port={port}",
        "unix_socket_directories=",
        "max_connections=200",
        "shared_buffers=128MB",
    ]
    if not durable:
        settings += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
    cluster.options = [part for setting in settings for part in ("-c", setting)]
    try:
        cluster.start()
    except ClusterError:
        cluster.stop()
        raise
    _ask_postgres(port, cluster.user, f'CREATE DATABASE "{cluster.database}"')
    return cluster


def _die_with_parent(signal_number: int) -> Callable[[], None]:
    """For ``preexec_fn``: the child gets ``signal_number`` when its parent dies (Linux), so a
    test run that is killed leaves no server behind."""

    def arrange() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0)

    return arrange


def _remove_stale(prefix: str, pid_file: str) -> None:
    """Delete directories of earlier runs that died: older than an hour, no live server."""
    for directory in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            if time.time() - directory.stat().st_mtime < STALE_AFTER_SECONDS:
                continue
            pid = int((directory / pid_file).read_text().split()[0])
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
            shutil.rmtree(directory, ignore_errors=True)
        except OSError:
            continue  # alive but not ours to signal, or unreadable: leave it


# --- nginx ------------------------------------------------------------------------------------


MAIN_CONFIG = """\
# Generated by siths_testkit/local_cluster.py: only paths; the IdP's part is {include}.
daemon off;
master_process on;
worker_processes {workers};
{user}pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
    include {include};
}}
"""


@dataclass
class NginxProcess:
    process: subprocess.Popen
    prefix: Path

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    def stop(self) -> None:
        """Stop nginx (graceful, then hard) and delete its directory."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.prefix, ignore_errors=True)


def start_nginx(
    values: Mapping[str, str],
    *,
    wait_for_port: int,
    workers: int = 1,
    template: Path = NGINX_TEMPLATE,
) -> NginxProcess:
    """Render ``template`` with ``values`` (``IDP_ACCESS_LOG`` defaults to the prefix's
    ``access.log``), check the configuration with ``nginx -t`` and run nginx in the
    foreground until :meth:`NginxProcess.stop`."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise ClusterError("nginx is not installed (Debian package: nginx)")
    _remove_stale("idp-nginx-", "nginx.pid")
    prefix = _private_directory("idp-nginx-", None)
    prefix.chmod(0o755)  # the workers (nobody) create temporary files below it
    (prefix / "temp").mkdir()
    rendered = render_template(
        template.read_text("utf-8"),
        {"IDP_ACCESS_LOG": str(prefix / "access.log"), **values},
    )
    include = prefix / "idp.conf"
    include.write_text(rendered, "utf-8")
    user = f"user {UNPRIVILEGED_USER} nogroup;\n" if os.geteuid() == 0 else ""
    main = prefix / "nginx.conf"
    main.write_text(
        MAIN_CONFIG.format(prefix=prefix, include=include, workers=workers, user=user), "utf-8"
    )
    command = [nginx, "-p", str(prefix), "-c", str(main), "-e", str(prefix / "error.log")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    if checked.returncode != 0:
        shutil.rmtree(prefix, ignore_errors=True)
        raise ClusterError(f"nginx -t refused the configuration: {checked.stderr}")
    log = prefix / "nginx.out"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(signal.SIGQUIT),
        )
    running = NginxProcess(process, prefix)
    try:
        _wait_for_port(wait_for_port, process, prefix / "error.log", 30)
    except ClusterError:
        running.stop()
        raise
    return running

"""A private Apache httpd for the interop peers: own config file, own port on 127.0.0.1, own
pid file, lock files and logs in a directory of its own; nothing of the packaged
/etc/apache2 setup (sites, ports, modules enabled there) is read.

Apache refuses to serve as root, so its children run as ``www-data``: everything they read
(configuration, PHP files) must be readable by that user, and the directories where they
write (logs, sessions) writable by it — :func:`peer_directory` makes such a directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.helpers.support import RunningServer, tls_context

MODULES = Path("/usr/lib/apache2/modules")
APACHE_USER = "www-data"

# Enough for TLS, Require/AuthType and Alias/SetEnv; prefork because mod_php needs it and
# mod_shib is happy with it. Each peer adds its own module (mod_shib or mod_php).
BASE_MODULES = (
    ("mpm_prefork_module", "mod_mpm_prefork.so"),
    ("authn_core_module", "mod_authn_core.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("socache_shmcb_module", "mod_socache_shmcb.so"),
    ("ssl_module", "mod_ssl.so"),
    ("alias_module", "mod_alias.so"),
    ("env_module", "mod_env.so"),
    ("mime_module", "mod_mime.so"),
    ("dir_module", "mod_dir.so"),
)


def peer_directory(prefix: str) -> Path:
    """A fresh directory under /tmp that Apache's ``www-data`` children can read and write.

    Not a pytest ``tmp_path``: those sit below a 0700 directory that ``www-data`` cannot
    enter. The caller removes it with :func:`remove_peer_directory`."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    directory.chmod(0o755)
    for name in ("logs", "run"):
        (directory / name).mkdir()
        give_to_apache(directory / name)
    return directory


def give_to_apache(path: Path) -> None:
    """Let Apache's children write into ``path`` (a log or session directory). Started by
    another user than root, Apache keeps that user (``User`` has no effect) and owns all."""
    if os.geteuid() == 0:
        user = pwd.getpwnam(APACHE_USER)
        os.chown(path, user.pw_uid, user.pw_gid)


def remove_peer_directory(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def apache_config(
    directory: Path,
    *,
    port: int,
    tls_cert: Path,
    tls_key: Path,
    modules: tuple[tuple[str, str], ...],
    body: str,
) -> str:
    """The whole httpd.conf of a private instance serving https://localhost:``port``."""
    loads = "\n".join(
        f"LoadModule {name} {MODULES / file}" for name, file in BASE_MODULES + modules
    )
    return f"""
ServerRoot {directory}
DefaultRuntimeDir {directory}/run
PidFile {directory}/run/httpd.pid
Mutex file:{directory}/run default
Listen 127.0.0.1:{port}
ServerName https://localhost:{port}
UseCanonicalName On
User {APACHE_USER}
Group {APACHE_USER}
ErrorLog {directory}/logs/error.log
LogLevel warn
{loads}
StartServers 1
MinSpareServers 1
MaxSpareServers 3
MaxRequestWorkers 8
TypesConfig /etc/mime.types
SSLEngine on
SSLCertificateFile {tls_cert}
SSLCertificateKeyFile {tls_key}
SSLSessionCache shmcb:{directory}/run/ssl_scache(512000)
DocumentRoot {directory}/htdocs
<Directory />
    Require all denied
</Directory>
{body}
"""


def start_apache(directory: Path, config: str, ready_url: str, ca_file: Path) -> RunningServer:
    """Run ``apache2 -DFOREGROUND`` on ``config`` until it answers ``ready_url`` over TLS."""
    (directory / "htdocs").mkdir(exist_ok=True)
    config_file = directory / "httpd.conf"
    config_file.write_text(config, encoding="utf-8")
    log_path = directory / "apache.out"
    with open(log_path, "wb") as log:
        # A session of its own: prefork's master signals its whole process group when it
        # stops, which would otherwise include pytest.
        process = subprocess.Popen(
            ["/usr/sbin/apache2", "-f", str(config_file), "-DFOREGROUND"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(process, ready_url, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"apache2 exited: {_logs(directory)}")
        try:
            httpx.get(ready_url, verify=tls_context(ca_file), timeout=2)
            return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"apache2 did not become ready: {_logs(directory)}")


def _logs(directory: Path) -> str:
    return "\n".join(
        path.read_text(errors="replace")
        for path in (directory / "apache.out", directory / "logs" / "error.log")
        if path.exists()
    )

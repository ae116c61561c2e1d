"""SimpleSAMLphp from Debian as a peer IdP, under a temporary directory, for benchmarks/peers.py.

What runs (all on 127.0.0.1, all children of the benchmark, stopped by :meth:`Peer.stop`):

- **slapd** (Debian's OpenLDAP) from a ``slapd.conf`` in the directory, MDB database seeded with
  ``slapadd`` before start: one ``inetOrgPerson`` per test person, ``uid`` = HSA-ID and the
  card's certificate in ``userCertificate;binary`` (what the ``authX509`` module compares);
- **php-fpm 8.2** with one pool (``pm = static``), the PHP configuration Debian ships
  (``/etc/php/8.2/fpm``, opcache on), SimpleSAMLphp's configuration directory passed as
  ``SIMPLESAMLPHP_CONFIG_DIR``;
- **nginx** with TLS (the test PKI's server certificate), ``ssl_verify_client
  optional_no_ca`` and the client certificate passed to PHP as ``SSL_CLIENT_CERT``
  (started by :func:`siths_testkit.local_cluster.start_nginx` with this module's template).

SimpleSAMLphp (``/usr/share/simplesamlphp``, 1.19): ``saml20-idp-hosted`` signing with the test
PKI's RSA-2048 IdP key, RSA-SHA256 (SHA-256 digests), Response and Assertion signed; the
AuthnRequest signature checked (``validate.authnrequest``); authentication source
``authX509:X509userCert``: the subject's ``serialNumber`` (the HSA-ID) looked up as ``uid`` in
LDAP, the presented certificate compared with the entry's ``userCertificate;binary``; ``uid``,
``givenName`` and ``sn`` released under the Sambi attribute names (``core:AttributeMap``).
Sessions in PHP session files, log at NOTICE to a file, as Debian's configuration does.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from siths_testkit.local_cluster import NginxProcess, _die_with_parent, start_nginx

SSP_ROOT = Path("/usr/share/simplesamlphp")
PHP_FPM = Path("/usr/sbin/php-fpm8.2")
SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SUFFIX = "dc=bench,dc=test"
PEOPLE = f"ou=people,{SUFFIX}"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SAMBI = "http://sambi.se/attributes/1/"
TEMPLATE = Path(__file__).resolve().parent / "simplesamlphp-nginx.conf.template"
# A static file of SimpleSAMLphp's that nginx serves itself: the transport floor's answer.
STATIC_PATH = "/simplesaml/resources/default.css"


@dataclass(frozen=True)
class Person:
    hsa_id: str
    given_name: str
    surname: str
    cert: Path


@dataclass
class Peer:
    """A running SimpleSAMLphp IdP."""

    base_url: str
    entity_id: str
    metadata_url: str
    metadata_dir: Path
    slapd: subprocess.Popen
    php_fpm: subprocess.Popen
    nginx: NginxProcess
    socket_dir: Path

    def process_groups(self) -> dict[str, list[int]]:
        """Every server process, by program: each pid's live children are counted with it."""
        return {
            "php-fpm": [self.php_fpm.pid],
            "nginx": [self.nginx.process.pid],
            "slapd": [self.slapd.pid],
        }

    def register_sp(self, entity_id: str, acs_url: str, cert_pem: bytes) -> None:
        """Trust an SP (SimpleSAMLphp reads its metadata files on every request)."""
        sp_der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
        (self.metadata_dir / "saml20-sp-remote.php").write_text(
            "<?php\n"
            f"$metadata[{php_string(entity_id)}] = [\n"
            "    'AssertionConsumerService' => [[\n"
            "        'Binding' => 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST',\n"
            f"        'Location' => {php_string(acs_url)},\n"
            "    ]],\n"
            f"    'certData' => '{base64.b64encode(sp_der).decode()}',\n"
            "    'validate.authnrequest' => true,\n"
            f"    'signature.algorithm' => {php_string(RSA_SHA256)},\n"
            "    'NameIDFormat' => 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient',\n"
            "];\n",
            encoding="utf-8",
        )

    def stop(self) -> None:
        self.nginx.stop()
        for process in (self.php_fpm, self.slapd):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM if process is self.slapd else signal.SIGQUIT)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        shutil.rmtree(self.socket_dir, ignore_errors=True)


def php_string(value: str) -> str:
    """A PHP single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _wait_port(port: int, process: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} does not listen on {port}: {log.read_text(errors='replace')}")


def _wait_file(path: Path, process: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start: {log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)


def missing_programs() -> list[str]:
    """Debian packages this peer needs that are not installed."""
    needed = {
        "simplesamlphp": SSP_ROOT / "www" / "_include.php",
        "php8.2-fpm": PHP_FPM,
        "php8.2-ldap": Path("/etc/php/8.2/mods-available/ldap.ini"),
        "slapd": SLAPD,
    }
    return [package for package, path in needed.items() if not path.exists()]


# --- slapd ------------------------------------------------------------------------------------


def _ldif(people: Sequence[Person]) -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: bench\ndc: bench\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
    ]
    for person in people:
        der = x509.load_pem_x509_certificate(person.cert.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
        entries.append(
            f"dn: uid={person.hsa_id},{PEOPLE}\nobjectClass: inetOrgPerson\n"
            f"uid: {person.hsa_id}\ncn: {person.given_name} {person.surname}\n"
            f"givenName: {person.given_name}\nsn: {person.surname}\n"
            f"userCertificate;binary:: {base64.b64encode(der).decode()}\n"
        )
    return "\n".join(entries)


def _start_slapd(directory: Path, port: int, people: Sequence[Person]) -> subprocess.Popen:
    data = directory / "data"
    data.mkdir(parents=True)
    conf = directory / "slapd.conf"
    conf.write_text(
        "include /etc/ldap/schema/core.schema\n"
        "include /etc/ldap/schema/cosine.schema\n"
        "include /etc/ldap/schema/inetorgperson.schema\n"
        f"pidfile {directory}/slapd.pid\n"
        f"argsfile {directory}/slapd.args\n"
        "loglevel none\n"
        "modulepath /usr/lib/ldap\n"
        "moduleload back_mdb\n"
        "database mdb\n"
        "maxsize 104857600\n"
        f'suffix "{SUFFIX}"\n'
        f'rootdn "cn=admin,{SUFFIX}"\n'
        f"rootpw {secrets.token_hex(16)}\n"
        f"directory {data}\n"
        "index objectClass eq\n"
        "index uid eq\n"
        # Read-only for everyone (the IdP searches anonymously, as the module's example does).
        "access to * by * read\n",
        encoding="utf-8",
    )
    ldif = directory / "people.ldif"
    ldif.write_text(_ldif(people), encoding="utf-8")
    seeded = subprocess.run(
        [str(SLAPADD), "-q", "-f", str(conf), "-l", str(ldif)],
        capture_output=True,
        text=True,
        check=False,
    )
    if seeded.returncode != 0:
        raise RuntimeError(f"slapadd failed: {seeded.stderr}")
    log = directory / "slapd.log"
    with open(log, "wb") as out:
        # -d 0: stay in the foreground (a child of ours), no debug output.
        process = subprocess.Popen(
            [str(SLAPD), "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(signal.SIGTERM),  # no slapd outlives a killed run
        )
    _wait_port(port, process, log, "slapd")
    return process


# --- SimpleSAMLphp's configuration ------------------------------------------------------------


def _write_config(
    directory: Path,
    *,
    base_url: str,
    ldap_port: int,
    idp_key: Path,
    idp_cert: Path,
) -> Path:
    config = directory / "config"
    metadata = directory / "metadata"
    for sub in ("config", "metadata", "log", "data", "scratch", "sessions", "cert"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    entries = {
        "baseurlpath": f"{base_url}/simplesaml/",
        "certdir": f"{directory}/cert/",
        "loggingdir": f"{directory}/log/",
        "datadir": f"{directory}/data/",
        "tempdir": f"{directory}/scratch",
        "metadatadir": f"{metadata}/",
        "attributenamemapdir": f"{SSP_ROOT}/attributemap/",
        "technicalcontact_name": "Benchmark",
        "technicalcontact_email": "bench@example.test",
        "timezone": "UTC",
        "secretsalt": secrets.token_hex(16),
        "auth.adminpassword": secrets.token_hex(16),
        "logging.handler": "file",
        "logging.logfile": "simplesamlphp.log",
        "session.phpsession.savepath": f"{directory}/sessions",
        "store.type": "phpsession",
    }
    lines = ["<?php", "$config = ["]
    lines += [f"    {php_string(key)} => {php_string(value)}," for key, value in entries.items()]
    lines += [
        "    'logging.level' => SimpleSAML\\Logger::NOTICE,",
        "    'statistics.out' => [['class' => 'core:Log', 'level' => 'notice']],",
        "    'enable.saml20-idp' => true,",
        "    'admin.protectindexpage' => false,",
        "    'admin.protectmetadata' => false,",
        "    'admin.checkforupdates' => false,",
        "    'showerrors' => true,",
        "    'errorreporting' => false,",
        "    'session.cookie.secure' => true,",
        "    'module.enable' => ['core' => true, 'saml' => true, 'ldap' => true,",
        "                        'authX509' => true, 'exampleauth' => false],",
        "    'metadata.sources' => [['type' => 'flatfile']],",
        "];",
        "",
    ]
    (config / "config.php").write_text("\n".join(lines), encoding="utf-8")
    (config / "authsources.php").write_text(
        "<?php\n$config = [\n"
        "    'admin' => ['core:AdminPassword'],\n"
        "    'x509' => [\n"
        "        'authX509:X509userCert',\n"
        "        'hostname' => '127.0.0.1',\n"
        f"        'port' => {ldap_port},\n"
        "        'enable_tls' => false,\n"
        "        'attributes' => ['uid', 'givenName', 'sn'],\n"
        "        'search.enable' => true,\n"
        f"        'search.base' => {php_string(PEOPLE)},\n"
        "        'search.attributes' => ['uid'],\n"
        "        // The card's subject serialNumber is its HSA-ID: the entry's uid.\n"
        "        'authX509:x509attributes' => ['serialNumber' => 'uid'],\n"
        "        'authX509:ldapusercert' => ['userCertificate;binary'],\n"
        "    ],\n"
        "];\n",
        encoding="utf-8",
    )
    entity_id = f"{base_url}/simplesaml/saml2/idp/metadata.php"
    (metadata / "saml20-idp-hosted.php").write_text(
        "<?php\n"
        f"$metadata[{php_string(entity_id)}] = [\n"
        "    'host' => '__DEFAULT__',\n"
        f"    'privatekey' => {php_string(str(idp_key))},\n"
        f"    'certificate' => {php_string(str(idp_cert))},\n"
        "    'auth' => 'x509',\n"
        f"    'signature.algorithm' => {php_string(RSA_SHA256)},\n"
        "    'saml20.sign.response' => true,\n"
        "    'saml20.sign.assertion' => true,\n"
        "    'attributes.NameFormat' => 'urn:oasis:names:tc:SAML:2.0:attrname-format:uri',\n"
        "    'authproc' => [\n"
        "        10 => ['class' => 'core:AttributeMap',\n"
        f"               'uid' => '{SAMBI}employeeHsaId',\n"
        f"               'givenName' => '{SAMBI}givenName',\n"
        f"               'sn' => '{SAMBI}surname'],\n"
        "    ],\n"
        "];\n",
        encoding="utf-8",
    )
    return config


def _start_php_fpm(directory: Path, config_dir: Path, socket_path: Path, children: int):  # type: ignore[no-untyped-def]
    conf = directory / "php-fpm.conf"
    conf.write_text(
        "[global]\n"
        f"pid = {directory}/php-fpm.pid\n"
        f"error_log = {directory}/php-fpm.log\n"
        "daemonize = no\n"
        "[simplesamlphp]\n"
        f"listen = {socket_path}\n"
        "listen.mode = 0666\n"
        "pm = static\n"
        f"pm.max_children = {children}\n"
        "clear_env = yes\n"
        f"env[SIMPLESAMLPHP_CONFIG_DIR] = {config_dir}\n"
        f"php_admin_value[error_log] = {directory}/php-error.log\n"
        f"php_admin_value[session.save_path] = {directory}/sessions\n",
        encoding="utf-8",
    )
    log = directory / "php-fpm.out"
    with open(log, "wb") as out:
        # -R: the pool runs as the caller (root in CI); everything it touches is ours.
        args = [str(PHP_FPM), "--nodaemonize", "--fpm-config", str(conf)]
        if os.geteuid() == 0:
            args.append("--allow-to-run-as-root")
        process = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(signal.SIGQUIT),  # no php-fpm outlives a killed run
        )
    _wait_file(socket_path, process, directory / "php-fpm.log", "php-fpm")
    return process


def start(
    directory: Path,
    *,
    port: int,
    ldap_port: int,
    people: Sequence[Person],
    idp_key: Path,
    idp_cert: Path,
    tls_cert: Path,
    tls_key: Path,
    php_children: int,
) -> Peer:
    """slapd, php-fpm and nginx for a SimpleSAMLphp IdP at ``https://localhost:{port}``."""
    missing = missing_programs()
    if missing:
        raise RuntimeError(f"not installed (Debian packages): {' '.join(missing)}")
    directory.mkdir(parents=True)
    # nginx's workers run as nobody: php-fpm's socket goes where they can reach it.
    socket_dir = Path(tempfile.mkdtemp(prefix="idp-bench-php-fpm-"))
    socket_dir.chmod(0o711)
    base_url = f"https://localhost:{port}"
    config_dir = _write_config(
        directory,
        base_url=base_url,
        ldap_port=ldap_port,
        idp_key=idp_key,
        idp_cert=idp_cert,
    )
    slapd = _start_slapd(directory / "ldap", ldap_port, people)
    php_fpm = nginx = None
    try:
        socket_path = socket_dir / "php-fpm.sock"
        php_fpm = _start_php_fpm(directory, config_dir, socket_path, php_children)
        nginx = start_nginx(
            {
                "LISTEN": "127.0.0.1",
                "PORT": str(port),
                "TLS_CERT": str(tls_cert),
                "TLS_KEY": str(tls_key),
                "FPM_SOCKET": str(socket_path),
                "SSP_WWW": str(SSP_ROOT / "www"),
                "IDP_ACCESS_LOG": "/dev/null",
            },
            wait_for_port=port,
            template=TEMPLATE,
        )
    except Exception:
        for process in (php_fpm, slapd):
            if process is not None:
                process.kill()
                process.wait()
        shutil.rmtree(socket_dir, ignore_errors=True)
        raise
    return Peer(
        base_url,
        entity_id=f"{base_url}/simplesaml/saml2/idp/metadata.php",
        metadata_url=f"{base_url}/simplesaml/saml2/idp/metadata.php",
        metadata_dir=directory / "metadata",
        slapd=slapd,
        php_fpm=php_fpm,
        nginx=nginx,
        socket_dir=socket_dir,
    )

"""SimpleSAMLphp 1.19 (Debian's package) as a peer SP, run privately for the tests.

It runs under mod_php in a private Apache (:mod:`tests.interop.private_apache`), its
configuration directory (``SIMPLESAMLPHP_CONFIG_DIR``) in the peer's own directory:
config.php is Debian's with the paths of this instance, authsources.php holds the IdP's
integration guide's authsource with this SP's entityID (its key pair is ``sp.key``/``sp.crt``
in the certificate directory, as the guide names them), and the IdP metadata is what
SimpleSAMLphp's own converter (metarefresh) makes of the IdP's signed metadata, after checking
its signature.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import urllib.parse
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import httpx
from lxml import etree

from tests.helpers.certificates import make_self_signed
from tests.helpers.support import RunningServer, free_port, tls_context
from tests.interop.private_apache import (
    MODULES,
    apache_config,
    give_to_apache,
    peer_directory,
    remove_peer_directory,
    start_apache,
)

SIMPLESAMLPHP = Path("/usr/share/simplesamlphp")
# The guide's placeholder for the SP's own entityID.
GUIDE_SP_ENTITY_ID = "https://sp.example.org/metadata"
AUTH_SOURCE = "default-sp"

CONFIG_PHP = """<?php
// Debian's configuration, with this instance's URL, paths and secrets.
require '/etc/simplesamlphp/config.php';
$config['baseurlpath'] = '{base_url}/simplesaml/';
$config['certdir'] = '{dir}/cert/';
$config['loggingdir'] = '{dir}/logs/';
$config['logging.handler'] = 'file';
$config['logging.level'] = SimpleSAML\\Logger::DEBUG;
$config['tempdir'] = '{dir}/tmp';
$config['cachedir'] = '{dir}/tmp';
$config['datadir'] = '{dir}/tmp/';
$config['metadatadir'] = '{dir}/metadata/';
$config['metadata.sources'] = [['type' => 'flatfile', 'directory' => '{dir}/metadata']];
$config['secretsalt'] = '{salt}';
$config['auth.adminpassword'] = '{salt}';
$config['admin.checkforupdates'] = false;
$config['timezone'] = 'UTC';
$config['session.cookie.secure'] = true;
$config['session.phpsession.savepath'] = '{dir}/sessions';
$config['store.type'] = 'phpsession';
$config['statistics.out'] = [];
$config['module.enable']['metarefresh'] = true;  // its converter checks the signature
$config['trusted.url.domains'] = ['localhost:{port}'];
"""

# An application page, as an integrator writes one: it starts a login asking for what its query
# string says, and lands on SimpleSAMLphp's own test page, which shows what came back.
LOGIN_PHP = """<?php
require_once '/usr/share/simplesamlphp/lib/_autoload.php';
$as = new \\SimpleSAML\\Auth\\Simple('default-sp');
$params = [
    'ReturnTo' => '{base_url}/simplesaml/module.php/core/authenticate.php?as=default-sp',
];
if (isset($_GET['loa'])) {
    $params['saml:AuthnContextClassRef'] = $_GET['loa'];
}
if (isset($_GET['comparison'])) {
    $params['saml:AuthnContextComparison'] = $_GET['comparison'];
}
if (isset($_GET['nameid'])) {
    $params['saml:NameIDPolicy'] = ['Format' => $_GET['nameid'], 'AllowCreate' => true];
}
$as->login($params);
"""


@dataclass
class SimpleSamlPhpPeer:
    base_url: str
    entity_id: str
    acs_url: str
    directory: Path
    apache: RunningServer
    metadata_xml: str

    def test_page_url(self) -> str:
        """SimpleSAMLphp's own test page: logs in if needed, then shows what it received."""
        return f"{self.base_url}/simplesaml/module.php/core/authenticate.php?as={AUTH_SOURCE}"

    def login_url(self, **query: str) -> str:
        """The application page starting a login with ``loa``/``comparison``/``nameid``."""
        return f"{self.base_url}/login.php?{urllib.parse.urlencode(query)}"

    def log(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")
            for path in (
                self.directory / "logs" / "simplesamlphp.log",
                self.directory / "logs" / "error.log",
            )
            if path.exists()
        )

    def stop(self) -> None:
        self.apache.stop()
        remove_peer_directory(self.directory)


def php_apache_module() -> str:
    """The file of Debian's mod_php (libphp8.2.so on bookworm)."""
    [module] = MODULES.glob("libphp*.so")
    return module.name


def authsources(guide_authsource: str, entity_id: str) -> str:
    """config/authsources.php holding the guide's authsource, with this SP's entityID."""
    assert GUIDE_SP_ENTITY_ID in guide_authsource, guide_authsource
    entry = guide_authsource.replace(GUIDE_SP_ENTITY_ID, entity_id)
    return f"<?php\n$config = [\n{entry}\n];\n"


def convert_idp_metadata(config_dir: Path, idp_metadata: Path, signer: Path, out: Path) -> None:
    """SimpleSAMLphp's metarefresh: check the signature, write saml20-idp-remote.php."""
    result = subprocess.run(
        [
            "php",
            str(SIMPLESAMLPHP / "modules" / "metarefresh" / "bin" / "metarefresh.php"),
            f"--certificate={signer}",
            f"--out-dir={out}",
            str(idp_metadata),
        ],
        env={"SIMPLESAMLPHP_CONFIG_DIR": str(config_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0 or not (out / "saml20-idp-remote.php").exists():
        raise RuntimeError(f"metarefresh failed: {result.stdout}\n{result.stderr}")


def start_simplesamlphp_peer(
    *,
    idp_metadata_xml: str,
    idp_metadata_signer: Path,
    guide_authsource: str,
    sp_metadata_dir: Path,
    tls_cert: Path,
    tls_key: Path,
    ca_file: Path,
) -> SimpleSamlPhpPeer:
    """Configure and serve SimpleSAMLphp; register its SP metadata at the IdP.

    ``guide_authsource`` is the integration guide's SimpleSAMLphp snippet (an authsources.php
    entry named ``default-sp``)."""
    directory = peer_directory("php-peer-")
    try:
        return _serve_in(
            directory,
            idp_metadata_xml=idp_metadata_xml,
            idp_metadata_signer=idp_metadata_signer,
            guide_authsource=guide_authsource,
            sp_metadata_dir=sp_metadata_dir,
            tls_cert=tls_cert,
            tls_key=tls_key,
            ca_file=ca_file,
        )
    except BaseException:
        remove_peer_directory(directory)
        raise


def _serve_in(
    directory: Path,
    *,
    idp_metadata_xml: str,
    idp_metadata_signer: Path,
    guide_authsource: str,
    sp_metadata_dir: Path,
    tls_cert: Path,
    tls_key: Path,
    ca_file: Path,
) -> SimpleSamlPhpPeer:
    port = free_port()
    base_url = f"https://localhost:{port}"
    # The guide is written for this IdP: its snippet names the entityID of the metadata.
    idp_entity_id = etree.fromstring(idp_metadata_xml.encode()).get("entityID")
    assert f"'idp' => '{idp_entity_id}'" in guide_authsource, guide_authsource
    config_dir = directory / "config"
    config_dir.mkdir()
    for name in ("metadata", "tmp", "sessions"):
        (directory / name).mkdir()
        give_to_apache(directory / name)
    log_file = directory / "logs" / "simplesamlphp.log"
    log_file.touch()
    give_to_apache(log_file)
    cert_dir = directory / "cert"
    cert_dir.mkdir()
    key, cert = make_self_signed(cert_dir, "php-sp")
    key = key.rename(cert_dir / "sp.key")
    cert.rename(cert_dir / "sp.crt")
    give_to_apache(key)
    key.chmod(0o600)
    entity_id = f"{base_url}/simplesaml/module.php/saml/sp/metadata.php/{AUTH_SOURCE}"
    (config_dir / "config.php").write_text(
        CONFIG_PHP.format(base_url=base_url, dir=directory, salt=secrets.token_hex(16), port=port),
        encoding="utf-8",
    )
    (config_dir / "authsources.php").write_text(
        authsources(guide_authsource, entity_id), encoding="utf-8"
    )
    idp_metadata = directory / "idp-metadata.xml"
    idp_metadata.write_text(idp_metadata_xml, encoding="utf-8")
    convert_idp_metadata(config_dir, idp_metadata, idp_metadata_signer, directory / "metadata")
    htdocs = directory / "htdocs"
    htdocs.mkdir()
    (htdocs / "login.php").write_text(LOGIN_PHP.replace("{base_url}", base_url), encoding="utf-8")
    config = apache_config(
        directory,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        modules=(("php_module", php_apache_module()),),
        body=f"""
SetEnv SIMPLESAMLPHP_CONFIG_DIR {config_dir}
Alias /simplesaml {SIMPLESAMLPHP}/www
<Directory {SIMPLESAMLPHP}/www>
    Require all granted
</Directory>
<Directory {htdocs}>
    Require all granted
</Directory>
<FilesMatch "\\.php$">
    SetHandler application/x-httpd-php
</FilesMatch>
""",
    )
    apache = start_apache(directory, config, entity_id, ca_file)
    try:
        metadata_xml = httpx.get(entity_id, verify=tls_context(ca_file), timeout=10).text
    except BaseException:
        apache.stop()
        raise
    (sp_metadata_dir / "php-peer.xml").write_text(metadata_xml, encoding="utf-8")
    acs_url = f"{base_url}/simplesaml/module.php/saml/sp/saml2-acs.php/{AUTH_SOURCE}"
    return SimpleSamlPhpPeer(base_url, entity_id, acs_url, directory, apache, metadata_xml)


def shown_attributes(page: str) -> dict[str, list[str]]:
    """Name → values of the test page's tables: the attributes, then the SAML Subject's
    ``NameId``, ``Format``, ``NameQualifier`` and ``SPNameQualifier``."""
    shown: dict[str, list[str]] = {}
    for row in re.finditer(
        r'<td class="attrname">(.*?)</td><td class="attrvalue">(.*?)</td>', page, re.S
    ):
        values = re.findall(r"<li>(.*?)</li>", row.group(2), re.S) or [row.group(2)]
        shown[_text(row.group(1))] = [_text(value) for value in values]
    return shown


def _text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html)).strip()


def shown_auth_data(page: str) -> dict:
    """The authentication data (AuthnContext, NameID…) the test page prints as JSON."""
    match = re.search(r"<pre>(\{.*?\})</pre>", page, re.S)
    if match is None:
        raise AssertionError(f"no authentication data on the page: {page[:3000]}")
    return json.loads(unescape(match.group(1)))

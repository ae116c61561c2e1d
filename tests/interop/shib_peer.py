"""Shibboleth SP 3 (Debian's shibd and mod_shib) as a peer SP, run privately for the tests.

Configured the way an integrator would: the IdP's signed metadata (checked against the IdP's
metadata signing certificate), the stock attribute-map.xml plus the entries of the IdP's
integration guide, and the SP's generated metadata plus the guide's AttributeConsumingService
registered at the IdP. Every path is absolute, into the peer's own directory: shibd resolves
relative paths against /etc/shibboleth, whose stock files (security-policy.xml with its
``blockUnsolicited`` policy, protocols.xml, the error templates) are used as packaged.
"""

from __future__ import annotations

import html
import re
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import httpx
from lxml import etree

from tests.helpers.certificates import make_self_signed
from tests.helpers.support import RunningServer, free_port, tls_context
from tests.interop.private_apache import (
    apache_config,
    give_to_apache,
    peer_directory,
    remove_peer_directory,
    start_apache,
)

STOCK_ATTRIBUTE_MAP = Path("/etc/shibboleth/attribute-map.xml")
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
ATTRIBUTE_MAP = "urn:mace:shibboleth:2.0:attribute-map"

SHIBBOLETH2_XML = """<SPConfig xmlns="urn:mace:shibboleth:3.0:native:sp:config"
    xmlns:conf="urn:mace:shibboleth:3.0:native:sp:config" clockSkew="180">
  <OutOfProcess logger="{dir}/shibd.logger"/>
  <InProcess logger="{dir}/native.logger"/>
  <TCPListener address="127.0.0.1" port="{shibd_port}" acl="127.0.0.1"/>
  <ApplicationDefaults entityID="{entity_id}" policyId="blockUnsolicited"
      signing="true" encryption="false" REMOTE_USER="employeeHsaId">
    <Sessions lifetime="28800" timeout="3600" relayState="ss:mem" checkAddress="false"
        handlerSSL="true" cookieProps="https" redirectLimit="exact">
      <SSO entityID="{idp_entity_id}">SAML2</SSO>
      <Logout>SAML2 Local</Logout>
      <Handler type="MetadataGenerator" Location="/Metadata" signing="false"/>
      <Handler type="Session" Location="/Session" showAttributeValues="true"/>
    </Sessions>
    <Errors supportContact="root@localhost" helpLocation="/about.html"
        styleSheet="/shibboleth-sp/main.css"/>
    <MetadataProvider type="XML" validate="true" path="{dir}/idp-metadata.xml">
      <MetadataFilter type="RequireValidUntil" maxValidityInterval="2419200"/>
      <MetadataFilter type="Signature" certificate="{dir}/idp-metadata-signer.pem"
          verifyBackup="false"/>
    </MetadataProvider>
    <AttributeExtractor type="XML" validate="true" reloadChanges="false"
        path="{dir}/attribute-map.xml"/>
    <AttributeFilter type="XML" validate="true" path="attribute-policy.xml"/>
    <CredentialResolver type="File" use="signing" key="{key}" certificate="{cert}"/>
    <CredentialResolver type="File" use="encryption" key="{key}" certificate="{cert}"/>
  </ApplicationDefaults>
  <SecurityPolicyProvider type="XML" validate="true" path="security-policy.xml"/>
  <ProtocolProvider type="XML" validate="true" reloadChanges="false" path="protocols.xml"/>
</SPConfig>
"""

LOGGER = """log4j.rootCategory=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.fileName={path}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=%d{{%H:%M:%S}} %p %c %x: %m%n
"""


@dataclass
class ShibbolethPeer:
    base_url: str
    entity_id: str
    directory: Path
    apache: RunningServer
    shibd: subprocess.Popen
    metadata_xml: str

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def acs_url(self) -> str:
        return f"{self.base_url}/Shibboleth.sso/SAML2/POST"

    def login_url(self, **parameters: str) -> str:
        """The SessionInitiator URL that starts a login and ends on the Session page.

        ``parameters`` are the initiator's own query parameters (``authnContextClassRef``,
        ``authnContextComparison``, ``NameIDFormat``, ``forceAuthn``…)."""
        query = {"target": f"{self.base_url}/Shibboleth.sso/Session", **parameters}
        return f"{self.base_url}/Shibboleth.sso/Login?{urllib.parse.urlencode(query)}"

    def logout_url(self) -> str:
        back = urllib.parse.quote(f"{self.base_url}/Shibboleth.sso/Session", safe="")
        return f"{self.base_url}/Shibboleth.sso/Logout?return={back}"

    def mdquery(self, entity_id: str, idp_metadata: Path | None = None):
        """Shibboleth's mdquery for ``entity_id`` through this peer's configuration, which it
        loads afresh, filters and all; with ``idp_metadata``, on a copy reading that file
        instead of the IdP metadata the running peer uses."""
        config = self.directory / "shibboleth2.xml"
        if idp_metadata is not None:
            variant = self.directory / f"mdquery-{idp_metadata.stem}.xml"
            text = config.read_text(encoding="utf-8")
            original = f'path="{self.directory}/idp-metadata.xml"'
            assert original in text
            variant.write_text(text.replace(original, f'path="{idp_metadata}"'), encoding="utf-8")
            config = variant
        return subprocess.run(
            ["/usr/bin/mdquery", "-e", entity_id],
            env={"SHIBSP_CONFIG": str(config), "PATH": "/usr/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def log(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")
            for path in (self.directory / "logs" / "shibd.log", self.directory / "apache.out")
            if path.exists()
        )

    def stop(self) -> None:
        self.apache.stop()
        self.shibd.terminate()
        try:
            self.shibd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.shibd.kill()
        remove_peer_directory(self.directory)


# Not for integrators: lets the tests read a transient NameID off the Session page (the stock
# map has persistent-id only).
TRANSIENT_ID = """<Attribute name="urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
    id="transient-id"><AttributeDecoder xsi:type="NameIDAttributeDecoder" formatter="$Name"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/></Attribute>"""


def attribute_map(guide_entries: str) -> str:
    """The stock attribute-map.xml with the guide's entries (and :data:`TRANSIENT_ID`)."""
    stock = etree.parse(str(STOCK_ATTRIBUTE_MAP)).getroot()
    added = etree.fromstring(
        f'<Attributes xmlns="{ATTRIBUTE_MAP}">{guide_entries}{TRANSIENT_ID}</Attributes>'
    )
    for entry in added.findall(f"{{{ATTRIBUTE_MAP}}}Attribute"):
        stock.append(entry)
    return etree.tostring(stock, encoding="unicode")


def with_requested_attributes(sp_metadata: str, guide_service: str) -> str:
    """The SP's generated metadata with the guide's AttributeConsumingService after the last
    AssertionConsumerService, as the guide says."""
    root = etree.fromstring(sp_metadata.encode())
    descriptor = root.find(f"{{{MD}}}SPSSODescriptor")
    service = etree.fromstring(f'<wrapper xmlns:md="{MD}">{guide_service}</wrapper>')[0]
    descriptor.findall(f"{{{MD}}}AssertionConsumerService")[-1].addnext(service)
    return etree.tostring(root, encoding="unicode")


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"shibd exited: {log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"shibd did not listen: {log.read_text(errors='replace')}")


def start_shibboleth_peer(
    *,
    idp_metadata_xml: str,
    idp_metadata_signer: Path,
    guide_attribute_map: str,
    guide_requested_attributes: str,
    sp_metadata_dir: Path,
    tls_cert: Path,
    tls_key: Path,
    ca_file: Path,
) -> ShibbolethPeer:
    """Start shibd and a private Apache with mod_shib; register the SP's metadata at the IdP.

    ``guide_attribute_map`` and ``guide_requested_attributes`` are the integration guide's
    Shibboleth snippets."""
    directory = peer_directory("shib-peer-")
    try:
        return _start_in(
            directory,
            idp_metadata_xml=idp_metadata_xml,
            idp_metadata_signer=idp_metadata_signer,
            guide_attribute_map=guide_attribute_map,
            guide_requested_attributes=guide_requested_attributes,
            sp_metadata_dir=sp_metadata_dir,
            tls_cert=tls_cert,
            tls_key=tls_key,
            ca_file=ca_file,
        )
    except BaseException:
        remove_peer_directory(directory)
        raise


def _start_in(
    directory: Path,
    *,
    idp_metadata_xml: str,
    idp_metadata_signer: Path,
    guide_attribute_map: str,
    guide_requested_attributes: str,
    sp_metadata_dir: Path,
    tls_cert: Path,
    tls_key: Path,
    ca_file: Path,
) -> ShibbolethPeer:
    port, shibd_port = free_port(), free_port()
    base_url = f"https://localhost:{port}"
    entity_id = f"{base_url}/shibboleth"
    idp_entity_id = etree.fromstring(idp_metadata_xml.encode()).get("entityID")
    key, cert = make_self_signed(directory, "shib-sp")
    key.chmod(0o600)  # read by shibd (root) only
    (directory / "idp-metadata.xml").write_text(idp_metadata_xml, encoding="utf-8")
    (directory / "idp-metadata-signer.pem").write_bytes(idp_metadata_signer.read_bytes())
    (directory / "attribute-map.xml").write_text(
        attribute_map(guide_attribute_map), encoding="utf-8"
    )
    (directory / "shibboleth2.xml").write_text(
        SHIBBOLETH2_XML.format(
            dir=directory,
            shibd_port=shibd_port,
            entity_id=entity_id,
            idp_entity_id=html.escape(idp_entity_id),
            key=key,
            cert=cert,
        ),
        encoding="utf-8",
    )
    logs = directory / "logs"
    (directory / "shibd.logger").write_text(LOGGER.format(path=logs / "shibd.log"))
    # mod_shib logs from Apache's www-data children, into a file they own.
    native_log = logs / "native.log"
    native_log.touch()
    give_to_apache(native_log)
    (directory / "native.logger").write_text(LOGGER.format(path=native_log))

    shibd_out = directory / "shibd.out"
    with open(shibd_out, "wb") as out:
        shibd = subprocess.Popen(
            [
                "/usr/sbin/shibd",
                "-F",
                "-f",
                "-c",
                str(directory / "shibboleth2.xml"),
                "-p",
                str(directory / "run" / "shibd.pid"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(shibd_port, shibd, shibd_out)
        config = apache_config(
            directory,
            port=port,
            tls_cert=tls_cert,
            tls_key=tls_key,
            modules=(("mod_shib", "mod_shib.so"),),
            body=f"""
ShibConfig {directory}/shibboleth2.xml
ShibCompatValidUser Off
<Location /Shibboleth.sso>
    SetHandler shib
    Require all granted
</Location>
""",
        )
        metadata_url = f"{base_url}/Shibboleth.sso/Metadata"
        apache = start_apache(directory, config, metadata_url, ca_file)
    except BaseException:
        shibd.kill()
        raise
    peer = ShibbolethPeer(base_url, entity_id, directory, apache, shibd, "")
    try:
        generated = httpx.get(metadata_url, verify=tls_context(ca_file), timeout=10).text
        peer.metadata_xml = with_requested_attributes(generated, guide_requested_attributes)
    except BaseException:
        peer.stop()
        raise
    (sp_metadata_dir / "shib-peer.xml").write_text(peer.metadata_xml, encoding="utf-8")
    return peer


def session_page_values(page: str) -> dict[str, str]:
    """``Name: value`` lines of Shibboleth's Session handler page (attributes, IdP, context)."""
    text = re.sub(r"<[^>]+>", "", page)
    values = {}
    for line in text.splitlines():
        name, sep, value = html.unescape(line).partition(": ")
        if sep and name.strip():
            values[name.strip()] = value.strip()
    return values

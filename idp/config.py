"""Settings for the IdP, read from the environment (prefix ``IDP_``) or given directly."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

GOTEBORGS_STAD_ORG_NUMBER = "2120001355"


def parse_workers(value: int | str) -> int:
    """``IDP_WORKERS`` / ``idp serve --workers``: a whole number >= 1, or ``auto`` (one per CPU).

    Raises ``ValueError`` with a message fit to show the operator.
    """
    text = str(value).strip().lower()
    if text == "auto":
        return max(1, os.cpu_count() or 1)
    try:
        workers = int(text)
    except ValueError:
        workers = 0
    if workers < 1:
        raise ValueError(f"workers must be a whole number of at least 1, or 'auto'; not {value!r}")
    return workers


class Settings(BaseSettings):
    """Everything the IdP needs to know about its environment.

    Paths that are left unset are derived from ``var_dir`` and ``pki_dir``, so an embedded
    deployment needs no configuration at all.
    """

    model_config = SettingsConfigDict(env_prefix="IDP_", env_nested_delimiter="__")

    # Public addresses. The client-certificate listener has its own origin so that the
    # browser's card prompt appears only for the certificate-login endpoint.
    base_url: str = "https://localhost:8443"
    cert_login_url: str = "https://localhost:8444"
    entity_id: str = ""

    # Where the embedded server listens.
    host: str = "127.0.0.1"
    port: int = 8443
    cert_port: int = 8444
    # Worker processes of this node (idp.server.supervisor): 1 is one process as always; more
    # accept on the ports a supervisor binds once. "auto": one per CPU.
    workers: int = 1

    # Relative paths are taken from the current directory when the settings are read, never
    # from where the code is installed (a wheel in site-packages has no place for state).
    var_dir: Path = Path("var")
    # SQLite under var_dir by default; PostgreSQL as postgresql+psycopg://user@host/db.
    database_url: str = ""
    # Apply migrations when the server starts. Unset: yes for SQLite (the embedded default),
    # no for a server database, where `idp db upgrade` runs once per deployment and every
    # node only checks that the schema is the newest.
    migrate_on_start: bool | None = None
    # Connections per node (kept open, and more under load): each of the server's 40 request
    # threads holds at most one, so 10 + 30 never makes a thread wait for a connection.
    database_pool_size: int = 10
    database_max_overflow: int = 30
    pki_dir: Path = Path()

    # SITHS trust: anchors (roots) and the issuing CAs that cards chain through.
    trust_anchors_file: Path = Path()
    intermediates_file: Path = Path()
    accepted_organisations: list[str] = Field(default_factory=lambda: [GOTEBORGS_STAD_ORG_NUMBER])

    # SAML
    saml_signing_key: Path = Path()
    saml_signing_cert: Path = Path()
    sp_metadata_dir: Path = Path("metadata") / "sp"
    saml_max_request_bytes: int = 64 * 1024
    # A remote signed SP metadata aggregate (idp/federation/remote.py): fetched over HTTPS,
    # verified with the pinned federation certificate, refreshed every refresh_seconds.
    sp_metadata_aggregate_url: str = ""
    sp_metadata_federation_cert: Path = Path()
    # CA bundle for the aggregate's HTTPS server; unset: the system's CAs.
    sp_metadata_aggregate_ca_file: Path = Path()
    sp_metadata_refresh_seconds: float = 300.0
    # Development only: accept http:// ACS URLs on 127.0.0.1, localhost and [::1]. Metadata
    # validation, the aggregate loader and the running IdP all apply it (idp/saml/acs.py).
    allow_http_loopback_acs: bool = False
    # Attribute profiles ("sambi", "swedish-eid") whose SPs must receive encrypted Assertions:
    # a login for such an SP without a usable encryption key in its metadata is refused, never
    # answered in clear. SPs that publish a usable key get encrypted Assertions regardless.
    require_encryption_profiles: list[str] = Field(default_factory=list)

    # TLS of the embedded server
    tls_cert: Path = Path()
    tls_key: Path = Path()
    # Limits of the embedded certificate listener (idp.server.cert_listener), in seconds: from
    # the connection to the client's TLS hello; the whole handshake (it includes choosing the
    # certificate and typing the card's PIN); idle between requests on a kept-alive
    # connection; and a whole request, head and body, from its first byte (408 after).
    cert_tls_hello_timeout_seconds: float = Field(default=10.0, gt=0)
    cert_handshake_timeout_seconds: float = Field(default=60.0, gt=0)
    cert_keep_alive_timeout_seconds: float = Field(default=30.0, gt=0)
    cert_request_timeout_seconds: float = Field(default=20.0, gt=0)
    # The main listener (uvicorn, idp.server.http_limits): a request, head and body, must be
    # complete within this many seconds of the connection or of its first byte (408 after).
    request_timeout_seconds: float = Field(default=20.0, gt=0)

    # Proxy mode: a client certificate in ``client_cert_header`` is believed only from these
    # addresses (IPs or CIDR networks).
    trusted_proxies: list[str] = Field(default_factory=list)
    client_cert_header: str = "X-SSL-Client-Cert"
    # Serve plain HTTP on host:port for a TLS-terminating proxy (nginx) and no certificate
    # listener: the proxy asks for the card and forwards it in client_cert_header.
    behind_proxy: bool = False
    # This node's name in the logs (several nodes write to one log store).
    node_name: str = ""

    # Operations: who may read /metrics (IPs or networks; others get 404), and how often
    # and how long after their expiry transient rows are deleted (idp.ops.sweeper).
    metrics_allowed_networks: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    sweep_interval_seconds: float = 300.0
    sweep_grace_seconds: int = 3600

    # Key for per-SP pseudonymous NameIDs; generated under var_dir when unset.
    pairwise_secret: str = ""

    # How far a SAML request's IssueInstant may be from this server's clock, in either
    # direction (AuthnRequest and LogoutRequest/Response).
    saml_clock_skew_seconds: int = 180

    pending_login_ttl_seconds: int = 600
    sso_session_ttl_seconds: int = 8 * 3600

    # Revocation (OCSP, then the CRL) of every card at every login. Fail closed by default;
    # soft-fail lets a login through only when no source can be reached at all, and says so
    # loudly in the log and the audit trail. revocation_ocsp_url overrides the card's AIA.
    revocation_soft_fail: bool = False
    revocation_ocsp_url: str = ""
    revocation_clock_skew_seconds: int = 300
    revocation_timeout_seconds: float = 5.0
    # With soft-fail, a source that could not be reached is not asked again for this long (each
    # login counts it unreachable meanwhile); 0: ask at every login.
    revocation_unreachable_retry_seconds: float = Field(default=30.0, ge=0)

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: int | str) -> int:
        return parse_workers(value)

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        self.var_dir = self.var_dir.absolute()
        self.sp_metadata_dir = self.sp_metadata_dir.absolute()
        if self.pki_dir == Path():
            self.pki_dir = self.var_dir / "pki"
        if not self.database_url:
            self.database_url = f"sqlite:///{self.var_dir / 'idp.sqlite3'}"
        if not self.entity_id:
            self.entity_id = f"{self.base_url}/saml/metadata"
        pki = self.pki_dir
        defaults = {
            "trust_anchors_file": pki / "siths" / "trust-anchors.pem",
            "intermediates_file": pki / "siths" / "intermediates.pem",
            "saml_signing_key": pki / "idp" / "saml-signing.key.pem",
            "saml_signing_cert": pki / "idp" / "saml-signing.crt.pem",
            "tls_cert": pki / "tls" / "server.crt.pem",
            "tls_key": pki / "tls" / "server.key.pem",
        }
        for name, value in defaults.items():
            if getattr(self, name) == Path():
                setattr(self, name, value)
        return self

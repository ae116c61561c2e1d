"""Settings for the portal, read from the environment (prefix ``PORTAL_``) or given directly.

Relative paths are relative to the repository root. Every path field is set after validation
(derived from ``var_dir``/``pki_dir`` when left empty).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TIMEZONE = ZoneInfo("Europe/Stockholm")
GOTEBORGS_STAD = "2120001355"
_UNSET = Path()


class Settings(BaseSettings):
    """Everything the portal needs to know about its environment."""

    model_config = SettingsConfigDict(env_prefix="PORTAL_")

    base_url: str = "https://localhost:8447"
    display_name: str = "Göteborgs Stads tjänsteportal (demo)"
    host: str = "127.0.0.1"
    port: int = 8447

    var_dir: Path = Path("var")
    pki_dir: Path = _UNSET
    tls_ca_file: Path = _UNSET
    tls_cert: Path = _UNSET
    tls_key: Path = _UNSET
    # The SITHS trust the recipient's card is checked against: the IdP's own files.
    trust_anchors_file: Path = _UNSET
    intermediates_file: Path = _UNSET
    database_url: str = ""
    session_secret: str = ""

    # Login: the portal is an OpenID Connect client of the IdP.
    oidc_issuer: str = "https://localhost:8443"
    oidc_client_id: str = "portal-demo"
    oidc_client_secret: str = ""

    # Mail over SMTP; a mail that cannot be handed over stays in the outbox and is retried.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_sender: str = "noreply-portal@goteborg.example.invalid"
    smtp_timeout_seconds: float = 10.0
    outbox_retry_seconds: int = 30

    # The letters that begin the local part of every HSA-ID the portal allocates
    # (SE2120001355-<series><6 digits>): a series of the city's HSA-IDs that is the portal's
    # alone, so no other allocator can hand out the same HSA-ID.
    hsa_id_series: str = Field(default="U", pattern=r"^[A-Za-z]{1,8}$")
    # How long the recipient's link works.
    link_lifetime_hours: int = 72
    # The cut-over date (a Swedish calendar date), as mock Treserva's.
    cutover_date: dt.date = dt.date(2024, 3, 1)

    # The IdP's directory is told about each new HSA-ID through its own command line
    # (`idp people add`), run with these IDP_* variables (JSON object).
    idp_command: Path = _UNSET
    idp_environment: dict[str, str] = Field(default_factory=dict)

    # Mock Treserva (its SCIM 2.0 API for step 7, its permission move for step 8) and the
    # bearer token both take; unset token: steps 7-8 are done by hand in Treserva.
    treserva_url: str = "https://localhost:8445"
    treserva_token: str = ""

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        self.var_dir = _absolute(self.var_dir)
        if self.pki_dir == _UNSET:
            self.pki_dir = self.var_dir / "pki"
        self.pki_dir = _absolute(self.pki_dir)
        self.base_url = self.base_url.rstrip("/")
        if not self.database_url:
            self.database_url = f"sqlite:///{self.var_dir / 'portal.sqlite3'}"
        defaults = {
            "tls_ca_file": self.pki_dir / "tls" / "ca.crt.pem",
            "tls_cert": self.pki_dir / "tls" / "server.crt.pem",
            "tls_key": self.pki_dir / "tls" / "server.key.pem",
            "trust_anchors_file": self.pki_dir / "siths" / "trust-anchors.pem",
            "intermediates_file": self.pki_dir / "siths" / "intermediates.pem",
            # The IdP's command from the same installation (venv) as the portal.
            "idp_command": Path(sys.executable).parent / "idp",
        }
        for name, default in defaults.items():
            value = getattr(self, name)
            setattr(self, name, default if value == _UNSET else _absolute(value))
        return self

    @property
    def uses_https(self) -> bool:
        return self.base_url.startswith("https://")

    def session_secret_value(self) -> str:
        """The configured secret, else one kept under ``var_dir`` (created on first use)."""
        if self.session_secret:
            return self.session_secret
        path = self.var_dir / "portal-session-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written to a private temporary file and linked into place: link() fails if the
            # name exists, so two processes starting at once agree on one complete secret.
            temporary = path.with_name(f"{path.name}.{secrets.token_hex(8)}")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
            finally:
                temporary.unlink()
        return path.read_text().strip()


def _absolute(path: Path) -> Path:
    """A relative path from the current directory, never from where the code is installed."""
    return path.absolute()


def today() -> dt.date:
    """Today's date in Sweden."""
    return dt.datetime.now(TIMEZONE).date()

"""Settings for mock Treserva, read from the environment (prefix ``SP_DEMO_``) or given directly.

Callers rely on every path field being set (derived from ``var_dir``/``pki_dir`` when left
empty) and on ``entity_id`` and ``acs_url`` being absolute URLs under ``base_url``. Relative
paths are relative to the repository root, never to the current directory, so ``sp-demo`` works
the same from anywhere.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Dates (the cut-over) are Swedish calendar dates: "from 1 March" means from midnight in Sweden.
TIMEZONE = ZoneInfo("Europe/Stockholm")

# Path() is the "unset" marker for paths that are derived in _derive_defaults: pydantic-settings
# reads an empty environment variable as Path("."), which equals Path(), so unset stays unset.
_UNSET = Path()


class Settings(BaseSettings):
    """Everything mock Treserva needs to know about its environment."""

    model_config = SettingsConfigDict(env_prefix="SP_DEMO_")

    # Public address; the SAML endpoints are derived from it.
    base_url: str = "https://localhost:8445"
    entity_id: str = ""
    display_name: str = "Treserva (demo)"

    # Where `sp-demo serve` listens.
    host: str = "127.0.0.1"
    port: int = 8445

    # The IdP: its metadata from a file if given, else fetched from the URL over HTTPS,
    # trusting ``tls_ca_file``. ``idp_metadata_cert``, if set, must have signed the metadata.
    idp_metadata_url: str = "https://localhost:8443/saml/metadata"
    idp_metadata_file: Path | None = None
    idp_metadata_cert: Path | None = None
    # How long fetched IdP metadata is used before it is fetched again (key rollover).
    idp_metadata_refresh_seconds: int = 3600

    var_dir: Path = Path("var")
    pki_dir: Path = _UNSET
    tls_ca_file: Path = _UNSET
    # OpenID Connect login beside SAML: offered when a client secret is configured (the IdP's
    # `idp oidc client add` prints it once).
    oidc_issuer: str = "https://localhost:8443"
    oidc_client_id: str = "treserva-demo"
    oidc_client_secret: str = ""
    sp_key: Path = _UNSET
    sp_cert: Path = _UNSET
    tls_cert: Path = _UNSET
    tls_key: Path = _UNSET

    database_url: str = ""

    # From this date only SITHS login is accepted; before it the Windows login (a form
    # standing in for it) works too. The source material's date is 1 March 2024.
    cutover_date: dt.date = dt.date(2024, 3, 1)
    # The Windows login stand-in checks one shared password: it is a mock, not a domain.
    windows_password: str = "windows"  # noqa: S105 (a documented demo value)
    # The HSA-IDs the IdP knows, for the readiness report: a CSV with an ``hsa_id`` column
    # (the IdP's directory import format) or the output of ``idp people list``. Unset: the
    # report says that check was not made.
    idp_directory_file: Path | None = None
    # The bearer token of the SCIM 2.0 API (/scim/v2) and the permission-move integration
    # that the city's service portal uses. Unset: both are switched off (404).
    scim_token: str = ""
    # The city's service portal, whose readiness board shows each employee's order (linked
    # from the readiness report when set).
    portal_url: str = ""

    # Signs the session cookie. When unset, one is generated once under var_dir so that a
    # restart does not log everybody out.
    session_secret: str = ""

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        self.var_dir = _absolute(self.var_dir)
        if self.pki_dir == _UNSET:
            self.pki_dir = self.var_dir / "pki"
        self.pki_dir = _absolute(self.pki_dir)
        self.base_url = self.base_url.rstrip("/")
        if not self.entity_id:
            self.entity_id = f"{self.base_url}/saml/metadata"
        if not self.database_url:
            self.database_url = f"sqlite:///{self.var_dir / 'sp_demo.sqlite3'}"
        defaults = {
            "tls_ca_file": self.pki_dir / "tls" / "ca.crt.pem",
            "sp_key": self.pki_dir / "sp" / "treserva.key.pem",
            "sp_cert": self.pki_dir / "sp" / "treserva.crt.pem",
            "tls_cert": self.pki_dir / "tls" / "server.crt.pem",
            "tls_key": self.pki_dir / "tls" / "server.key.pem",
        }
        for name, default in defaults.items():
            value = getattr(self, name)
            setattr(self, name, default if value == _UNSET else _absolute(value))
        for name in ("idp_metadata_file", "idp_metadata_cert", "idp_directory_file"):
            value = getattr(self, name)
            if value == _UNSET:
                setattr(self, name, None)
            elif value is not None:
                setattr(self, name, _absolute(value))
        return self

    @property
    def acs_url(self) -> str:
        """The Assertion Consumer Service (HTTP-POST), as published in the SP metadata."""
        return f"{self.base_url}/saml/acs"

    @property
    def slo_redirect_url(self) -> str:
        """Single Logout, HTTP-Redirect binding (LogoutRequests and LogoutResponses)."""
        return f"{self.base_url}/saml/slo/redirect"

    @property
    def slo_post_url(self) -> str:
        """Single Logout, HTTP-POST binding."""
        return f"{self.base_url}/saml/slo/post"

    @property
    def uses_https(self) -> bool:
        return self.base_url.startswith("https://")

    def session_secret_value(self) -> str:
        """The configured secret, else the one under ``var_dir`` (created on first use)."""
        if self.session_secret:
            return self.session_secret
        path = self.var_dir / "sp_demo-session-secret"
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

"""What every protocol step of the provider needs, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from idp.db import Database
from idp.oidc.claims import ClaimRelease
from idp.oidc.keys import KeyRing
from idp.oidc.settings import OidcSettings

AUTHORIZE_PATH = "/oidc/authorize"
TOKEN_PATH = "/oidc/token"  # noqa: S105 (a path)
USERINFO_PATH = "/oidc/userinfo"
END_SESSION_PATH = "/oidc/end-session"
JWKS_PATH = "/oidc/jwks"
DISCOVERY_PATH = "/.well-known/openid-configuration"


@dataclass(frozen=True)
class ProviderContext:
    database: Database
    settings: OidcSettings
    keys: KeyRing
    release: ClaimRelease

    @property
    def issuer(self) -> str:
        return self.settings.issuer

    def url(self, path: str) -> str:
        return f"{self.settings.issuer}{path}"

"""Settings of the OpenID Provider, read from the environment (prefix ``IDP_OIDC_``).

They live here rather than in :class:`idp.config.Settings` so the provider stays one package;
:meth:`OidcSettings.for_idp` derives what is left unset from the IdP's own settings.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from idp.config import Settings


class OidcSettings(BaseSettings):
    """Lifetimes, the issuer and where the signing keys live."""

    model_config = SettingsConfigDict(env_prefix="IDP_OIDC_")

    # The issuer is the IdP's public base URL; discovery lives under it.
    issuer: str = ""
    # Codes are redeemed by a server a moment after the redirect: a minute is plenty.
    code_ttl_seconds: int = Field(default=60, ge=5, le=600)
    access_token_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    id_token_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    # Private signing keys: under var/, never in the repository.
    keys_dir: Path = Path()
    rsa_key_size: int = Field(default=3072, ge=2048)
    # How often a running IdP looks for a rollover made by ``idp oidc keys rotate``.
    key_check_interval_seconds: float = Field(default=1.0, ge=0.0)

    @classmethod
    def for_idp(cls, settings: Settings) -> OidcSettings:
        """Settings from the environment, with the issuer and key directory derived from
        ``settings`` when unset."""
        oidc = cls()
        if not oidc.issuer:
            oidc.issuer = settings.base_url.rstrip("/")
        if oidc.keys_dir == Path():
            oidc.keys_dir = settings.var_dir / "oidc" / "keys"
        return oidc

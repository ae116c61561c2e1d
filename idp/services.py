"""The long-lived objects a request handler needs, built once at start-up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from idp.authn import Authentication
from idp.config import Settings
from idp.db import Database
from idp.methods.client_certificate import TrustedProxies
from idp.oidc.provider import OpenIDProvider
from idp.saml.server import SamlIdentityProvider
from idp.siths.validation import SithsValidator

# A protocol's answer to a finished login: (request, protocol_state, authentication) -> page.
Responder = Callable[[Request, dict, Authentication], Awaitable[Response]]


@dataclass
class Services:
    settings: Settings
    database: Database
    validator: SithsValidator
    saml: SamlIdentityProvider
    trusted_proxies: TrustedProxies
    oidc: OpenIDProvider
    responders: dict[str, Responder] = field(default_factory=dict)


def services_of(request: Request) -> Services:
    return request.app.state.services

"""What every page handler of the portal shares: rendering, the refusal page, the session's
login, its roles, and the CSRF token of its forms.

The session (a signed cookie) holds the login (``LOGIN_KEY``: HSA-ID and name from the IdP's
ID token). What that HSA-ID may do comes from the portal's own :class:`RoleGrant` rows, read
on every request.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from portal.config import Settings
from portal.db import Database
from portal.models import EKU_ADMIN, IT_CONTACT, RoleGrant
from portal.refusals import FALLBACK, Refused, Words

LOGIN_KEY = "login"
CSRF_KEY = "csrf"
# Package data (portal/templates), so an installed wheel finds its pages.
templates = Jinja2Templates(
    env=Environment(loader=PackageLoader("portal", "templates"), autoescape=select_autoescape())
)


@dataclass(frozen=True)
class Login:
    hsa_id: str
    name: str
    # Organisation numbers this HSA-ID is IT-kontaktperson for.
    providers: tuple[str, ...]
    eku_admin: bool

    @property
    def actor(self) -> str:
        """How this person is named in the audit trail."""
        return f"{self.hsa_id} ({self.name})" if self.name else self.hsa_id


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def database_of(request: Request) -> Database:
    return request.app.state.database


def current_login(request: Request) -> Login | None:
    stored = request.session.get(LOGIN_KEY)
    if not isinstance(stored, dict) or not isinstance(stored.get("hsa_id"), str):
        return None
    hsa_id = stored["hsa_id"]
    with database_of(request).session() as session:
        grants = session.scalars(select(RoleGrant).where(RoleGrant.hsa_id == hsa_id)).all()
    return Login(
        hsa_id=hsa_id,
        name=str(stored.get("name", "")),
        providers=tuple(sorted(g.provider_org for g in grants if g.role == IT_CONTACT)),
        eku_admin=any(g.role == EKU_ADMIN for g in grants),
    )


def csrf_token(request: Request) -> str:
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str) or len(token) < 20:
        token = secrets.token_urlsafe(24)
        request.session[CSRF_KEY] = token
    return token


def check_csrf(request: Request, submitted: object) -> None:
    token = request.session.get(CSRF_KEY)
    if not (
        isinstance(token, str)
        and isinstance(submitted, str)
        and hmac.compare_digest(token.encode(), submitted.encode())
    ):
        raise Refused("csrf")


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    settings = settings_of(request)
    base = {
        "display_name": settings.display_name,
        "login": current_login(request),
        "csrf": lambda: csrf_token(request),
    }
    return templates.TemplateResponse(
        request, template, {**base, **context}, status_code=status_code
    )


def refusal_page(request: Request, refused: Refused) -> Response:
    return render(request, "error.html", {"refused": refused}, refused.words.status_code)


def fallback_page(request: Request) -> Response:
    refused = Refused("unexpected")
    words: Words = FALLBACK
    return render(request, "error.html", {"refused": refused, "words": words}, 500)

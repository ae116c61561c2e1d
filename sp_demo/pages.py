"""What every page handler of mock Treserva shares: rendering, error pages, the session's login
and the CSRF token of its forms.

The session (a signed cookie) holds at most one login: a SITHS login (``LOGIN_KEY``, a
:class:`~sp_demo.saml.LoginResult`) or a Windows login (``WINDOWS_KEY``, the account name).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import Response

from sp_demo.config import Settings
from sp_demo.db import Database
from sp_demo.messages import UserMessage, message_for
from sp_demo.saml import LoginResult

LOGIN_KEY = "login"
WINDOWS_KEY = "windows_login"
CSRF_KEY = "csrf"
# Where the browser goes after a SITHS login, when it was not /me (e.g. the admin page).
AFTER_LOGIN_KEY = "after_login"
AFTER_LOGIN_PATHS = frozenset({"/me", "/admin"})

# Package data (sp_demo/templates), so an installed wheel finds its pages.
templates = Jinja2Templates(
    env=Environment(loader=PackageLoader("sp_demo", "templates"), autoescape=select_autoescape())
)


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def database_of(request: Request) -> Database:
    return request.app.state.database


def siths_login(request: Request) -> LoginResult | None:
    """The session's SITHS login, if it has one."""
    stored = request.session.get(LOGIN_KEY)
    return LoginResult.from_dict(stored) if isinstance(stored, dict) else None


def windows_account(request: Request) -> str | None:
    """The Windows account of the session's Windows login, if it has one."""
    stored = request.session.get(WINDOWS_KEY)
    return str(stored) if isinstance(stored, str) and stored else None


def csrf_token(request: Request) -> str:
    """This session's token for forms (created on first use)."""
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str) or len(token) < 20:
        token = secrets.token_urlsafe(24)
        request.session[CSRF_KEY] = token
    return token


def csrf_ok(request: Request, submitted: object) -> bool:
    """True if a form's ``csrf`` field is this session's token. The session cookie is
    SameSite=None (the IdP posts to the ACS cross-site), so a form on another site could make
    the browser post here with it: the token is what a foreign site cannot know."""
    token = request.session.get(CSRF_KEY)
    return (
        isinstance(token, str)
        and isinstance(submitted, str)
        and hmac.compare_digest(token.encode(), submitted.encode())
    )


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    """Render ``sp_demo/templates/<template>`` with what the base layout needs."""
    settings = settings_of(request)
    base = {
        "display_name": settings.display_name,
        "logged_in": LOGIN_KEY in request.session or WINDOWS_KEY in request.session,
        # Called by the templates that have forms, so other pages set no session cookie.
        "csrf": lambda: csrf_token(request),
    }
    return templates.TemplateResponse(
        request, template, {**base, **context}, status_code=status_code
    )


def error_page(request: Request, reason: str, message: UserMessage | None = None) -> Response:
    """The error page for ``reason`` (see :mod:`sp_demo.messages`), with its status code."""
    message = message or message_for(reason)
    return render(
        request, "error.html", {"message": message, "reason": reason}, message.status_code
    )

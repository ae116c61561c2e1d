"""Rendering pages and setting the browser's cookies, shared by every router."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from idp.config import REPO_ROOT
from idp.login.pending import BROWSER_COOKIE, new_token
from idp.web.messages import UserMessage, message_for

templates = Jinja2Templates(directory=str(REPO_ROOT / "templates"))

BROWSER_COOKIE_MAX_AGE = 365 * 24 * 3600


def render_page(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """Render ``templates/<template>`` with a fresh CSP nonce for any inline script."""
    nonce = secrets.token_urlsafe(16)
    response = templates.TemplateResponse(
        request, template, {"csp_nonce": nonce, **context}, status_code=status_code
    )
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def error_page(
    request: Request,
    reason: str,
    *,
    retry_url: str | None = None,
    message: UserMessage | None = None,
) -> HTMLResponse:
    """The page a user sees when a login step is refused: what happened and what to do."""
    chosen = message or message_for(reason)
    return render_page(
        request,
        "idp/error.html",
        {
            "message": chosen,
            "reason": reason,
            "retry_url": retry_url if chosen.can_retry else None,
        },
        status_code=chosen.status_code,
    )


def browser_token(request: Request) -> tuple[str, bool]:
    """The browser's binding token and whether it is new (and must be set as a cookie)."""
    token = request.cookies.get(BROWSER_COOKIE)
    if token and 20 <= len(token) <= 100:
        return token, False
    return new_token(), True


def set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
    """Set a ``__Host-`` cookie: Secure, host-only, path /, not readable by scripts.

    SameSite=None because SAML's HTTP-POST binding arrives as a cross-site POST, which must
    still carry the browser's cookies.
    """
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="none"
    )


def set_browser_cookie(response: Response, token: str) -> None:
    set_cookie(response, BROWSER_COOKIE, token, BROWSER_COOKIE_MAX_AGE)

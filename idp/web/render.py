"""Rendering pages and setting the browser's cookies, shared by every router."""

from __future__ import annotations

import secrets
import urllib.parse
from typing import Any

from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from idp.login.pending import BROWSER_COOKIE, new_token
from idp.services import BackToService
from idp.web.messages import UserMessage, message_for

# Package data (idp/templates), so an installed wheel finds its pages wherever it is installed.
templates = Jinja2Templates(
    env=Environment(loader=PackageLoader("idp", "templates"), autoescape=select_autoescape())
)

BROWSER_COOKIE_MAX_AGE = 365 * 24 * 3600

# Swedish first; English for whoever asks (?lang=en, then remembered in a cookie).
LANGUAGES = ("sv", "en")
DEFAULT_LANGUAGE = "sv"
LANGUAGE_COOKIE = "__Host-idp-lang"
_SWITCH_LABELS = {"sv": "På svenska", "en": "In English"}
# Pages that offer the language switch: GETs that are safe to load again with ``lang=`` added.
# Error pages show both languages instead, and a step such as /cert-login or a SAML message must
# never be repeated just to change the language.
_SWITCHABLE_PATHS = frozenset({"/", "/login", "/login/continue", "/login/other-device"})


@pass_context
def _translate(context: Context, sv: str, en: str) -> str:
    """``t("svenska", "English")`` in a template: the text in the page's language."""
    return en if context.get("lang") == "en" else sv


templates.env.globals["t"] = _translate


def page_language(request: Request) -> tuple[str, bool]:
    """The page's language and whether it was chosen just now (``?lang=``) and is to be kept."""
    asked = request.query_params.get("lang", "")
    kept = request.cookies.get(LANGUAGE_COOKIE, "")
    if asked in LANGUAGES:
        return asked, asked != kept
    return (kept if kept in LANGUAGES else DEFAULT_LANGUAGE), False


def language_switch(request: Request, lang: str) -> dict[str, str] | None:
    """The link to this same page in the other language, where reloading the page is safe."""
    if request.method != "GET" or request.url.path not in _SWITCHABLE_PATHS:
        return None
    other = "en" if lang == "sv" else "sv"
    # Not ``new``: on the QR page it asks for a new order, and switching language must not.
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("lang", "new")]
    query.append(("lang", other))
    return {
        "lang": other,
        "label": _SWITCH_LABELS[other],
        "href": f"{request.url.path}?{urllib.parse.urlencode(query)}",
    }


def render_page(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """Render ``idp/templates/<template>`` with a fresh CSP nonce for any inline script.

    The page is in the browser's language (Swedish unless English was chosen); a language
    chosen with ``?lang=`` is remembered in a cookie for the rest of the login.
    """
    nonce = secrets.token_urlsafe(16)
    lang, chosen_now = page_language(request)
    response = templates.TemplateResponse(
        request,
        template,
        {
            "csp_nonce": nonce,
            "lang": lang,
            "language_switch": language_switch(request, lang),
            **context,
        },
        status_code=status_code,
    )
    if chosen_now:
        set_cookie(response, LANGUAGE_COOKIE, lang, BROWSER_COOKIE_MAX_AGE)
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
    back_to_service: BackToService | None = None,
) -> HTMLResponse:
    """The page a user sees when a login step is refused: what happened and what to do, and
    with ``back_to_service`` a button that takes the answer back to the application."""
    chosen = message or message_for(reason)
    return render_page(
        request,
        "idp/error.html",
        {
            "message": chosen,
            "reason": reason,
            "retry_url": retry_url if chosen.can_retry else None,
            "back": back_to_service,
        },
        status_code=chosen.status_code,
    )


# A request with nothing in it: the one a page is rendered for when none could be read.
_NO_REQUEST_SCOPE = {
    "type": "http",
    "method": "GET",
    "path": "/",
    "query_string": b"",
    "headers": [],
}


def standalone_error_page(reason: str) -> HTMLResponse:
    """The error page for ``reason`` without a request to render it for (the certificate
    listener refusing a request it could not read): Swedish, with English alongside."""
    return error_page(Request(_NO_REQUEST_SCOPE), reason)


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

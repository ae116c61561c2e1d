"""Rendering pages and setting the browser's cookies, shared by every router."""

from __future__ import annotations

import re
import secrets
import urllib.parse
from typing import Any

from jinja2 import Environment, PackageLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from idp.login.pending import BROWSER_COOKIE, new_token
from idp.services import BackToService
from idp.web.messages import UserMessage, message_for

# Package data (idp/templates), so an installed wheel finds its pages wherever it is installed.
# The templates are part of the release: loaded once, never looked at on disk again (Jinja's
# auto_reload stats the file on every render).
templates = Environment(
    loader=PackageLoader("idp", "templates"), autoescape=select_autoescape(), auto_reload=False
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


templates.globals["t"] = _translate


# ``lang=`` as the language switch writes it. Found in the raw query string: a page answering
# an AuthnRequest has kilobytes of SAML message there, which need not be decoded for this.
_LANG_PARAMETER = re.compile(rb"(?:^|&)lang=([^&]*)")


def page_language(request: Request) -> tuple[str, bool]:
    """The page's language and whether it was chosen just now (``?lang=``, the last one if
    several) and is to be kept."""
    asked_values = _LANG_PARAMETER.findall(request.scope.get("query_string", b""))
    asked = asked_values[-1].decode("ascii", "replace") if asked_values else ""
    kept = request.cookies.get(LANGUAGE_COOKIE, "")
    if asked in LANGUAGES:
        return asked, asked != kept
    return (kept if kept in LANGUAGES else DEFAULT_LANGUAGE), False


def language_switch(
    request: Request, lang: str, address: str | None = None
) -> dict[str, str] | None:
    """The link to this same page in the other language, where reloading the page is safe:
    the request's own address, or ``address`` (path and query) for a page shown in the answer
    to another request (the chooser answering an AuthnRequest, which must not be sent again)."""
    if address is not None:
        path, _, query_string = address.partition("?")
        items = urllib.parse.parse_qsl(query_string, keep_blank_values=True)
    elif request.method == "GET":
        path, items = request.scope["path"], request.query_params.multi_items()
    else:
        return None
    if path not in _SWITCHABLE_PATHS:
        return None
    other = "en" if lang == "sv" else "sv"
    # Not ``new``: on the QR page it asks for a new order, and switching language must not.
    query = [(k, v) for k, v in items if k not in ("lang", "new")]
    query.append(("lang", other))
    return {
        "lang": other,
        "label": _SWITCH_LABELS[other],
        "href": f"{path}?{urllib.parse.urlencode(query)}",
    }


def render_page(
    request: Request,
    template: str,
    context: dict[str, Any],
    status_code: int = 200,
    *,
    address: str | None = None,
) -> HTMLResponse:
    """Render ``idp/templates/<template>`` with a fresh CSP nonce for any inline script.

    The page is in the browser's language (Swedish unless English was chosen); a language
    chosen with ``?lang=`` is remembered in a cookie for the rest of the login. ``address``:
    the page's own address when it is the answer to another request: the language switch
    leads there (:func:`language_switch`), and the browser shows it in its address bar.
    """
    nonce = secrets.token_urlsafe(16)
    lang, chosen_now = page_language(request)
    html = templates.get_template(template).render(
        csp_nonce=nonce,
        lang=lang,
        language_switch=language_switch(request, lang, address),
        address_bar=address,
        **context,
    )
    response = HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Content-Security-Policy": (
                f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self'; "
                "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
            ),
            "Cache-Control": "no-store",
        },
    )
    if chosen_now:
        set_cookie(response, LANGUAGE_COOKIE, lang, BROWSER_COOKIE_MAX_AGE)
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


# What the IdP's cookie names and values are made of (tokens, language codes): nothing that
# needs quoting in a Set-Cookie header, and nothing that could end it.
_COOKIE_OCTETS = re.compile(r"[A-Za-z0-9_.~-]*")


def set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
    """Set a ``__Host-`` cookie: Secure, host-only, path /, not readable by scripts.

    SameSite=None because SAML's HTTP-POST binding arrives as a cross-site POST, which must
    still carry the browser's cookies. ``value`` ``""`` with ``max_age`` 0 deletes the cookie.
    Raises ValueError for a name or value outside ``[A-Za-z0-9_.~-]`` (the IdP's own tokens
    never are), so no caller can put a header's end into one.
    """
    if not (_COOKIE_OCTETS.fullmatch(name) and _COOKIE_OCTETS.fullmatch(value)) or not name:
        raise ValueError(f"not a cookie the IdP sets: {name!r}")
    # Written directly: http.cookies (Starlette's set_cookie) costs more than the page it is on.
    lifetime = "" if max_age is None else f"Max-Age={max_age}; "
    header = f"{name}={value}; {lifetime}Path=/; SameSite=None; Secure; HttpOnly"
    response.raw_headers.append((b"set-cookie", header.encode("latin-1")))


def clear_cookie(response: Response, name: str) -> None:
    """Delete the browser's cookie ``name`` (set by :func:`set_cookie`)."""
    set_cookie(response, name, "", 0)


def set_browser_cookie(response: Response, token: str) -> None:
    set_cookie(response, BROWSER_COOKIE, token, BROWSER_COOKIE_MAX_AGE)

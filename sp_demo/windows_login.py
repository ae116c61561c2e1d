"""The Windows login stand-in: a form with account and password, open until the cut-over.

Before the cut-over date an account logs in with its Windows account and sees the permissions
still on its Windows login; from that date the form is gone and the page says why and what to
do instead (SITHS card). The password is one shared demo value (``SP_DEMO_WINDOWS_PASSWORD``):
this stands in for a domain login, it is not one.
"""

from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sp_demo.cutover import windows_login_open
from sp_demo.db import find_user_by_windows_account
from sp_demo.messages import message_for
from sp_demo.pages import (
    WINDOWS_KEY,
    csrf_ok,
    database_of,
    error_page,
    render,
    settings_of,
)

logger = logging.getLogger("sp_demo")
router = APIRouter()
MAX_FIELD_CHARS = 200


@router.get("/windows-login")
async def windows_login_form(request: Request) -> Response:
    if not windows_login_open(settings_of(request)):
        return _closed(request)
    return render(request, "windows_login.html", {"error": None, "account": ""})


@router.post("/windows-login")
async def windows_login(request: Request) -> Response:
    settings = settings_of(request)
    if not windows_login_open(settings):
        return _closed(request)
    form = await request.form(max_files=0, max_fields=5)
    if not csrf_ok(request, form.get("csrf")):
        return error_page(request, "csrf")
    account = str(form.get("windows_account", "")).strip()[:MAX_FIELD_CHARS]
    password = str(form.get("password", ""))[:MAX_FIELD_CHARS]

    def account_exists() -> bool:
        with database_of(request).session() as session:
            return find_user_by_windows_account(session, account) is not None

    known = bool(account) and await run_in_threadpool(account_exists)
    password_ok = hmac.compare_digest(password.encode(), settings.windows_password.encode())
    if not (known and password_ok):
        logger.info("Windows login refused for %r", account)
        return render(
            request,
            "windows_login.html",
            {"error": message_for("windows_login_failed"), "account": account},
            401,
        )
    request.session.clear()
    request.session[WINDOWS_KEY] = account
    logger.info("Windows login: %s", account)
    return RedirectResponse("/me", status_code=303)


def _closed(request: Request) -> Response:
    settings = settings_of(request)
    return render(
        request,
        "windows_login_closed.html",
        {"cutover_date": settings.cutover_date, "reason": "windows_login_closed"},
        410,
    )

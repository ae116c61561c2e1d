"""The administrator pages: register HSA-IDs, move permissions, import/export CSV, the
readiness report and the audit trail.

Reached through the IdP like every other page: without a SITHS login the browser is sent to
log in and comes back here; a SITHS login without the administrator permission
(:data:`sp_demo.users.ADMIN_ROLE`) gets 403. Every change is made in one transaction together
with its audit event, named after the administrator's HSA-ID and name; every form carries the
session's CSRF token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import selectinload
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sp_demo import audit
from sp_demo.cutover import today
from sp_demo.db import LOGIN_SITHS, LOGIN_WINDOWS, Database, User, list_users
from sp_demo.idp_directory import DirectoryFileError, load_known_hsa_ids
from sp_demo.pages import (
    csrf_ok,
    database_of,
    error_page,
    render,
    settings_of,
    siths_login,
)
from sp_demo.problems import ChangeRefused, Problem
from sp_demo.readiness import REASONS, ReadinessReport, build_report, report_csv
from sp_demo.user_csv import write_export
from sp_demo.user_import import ImportReport, import_users
from sp_demo.users import admin_by_hsa_id, move_permissions, permissions_on, register_hsa_id

logger = logging.getLogger("sp_demo")
router = APIRouter(prefix="/admin")
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_LISTED_USERS = 1000
FLASH_KEY = "admin_flash"
# HTTP status for each refusal: the request was malformed, or clashes with the register.
_STATUS = {"unknown_account": 404, "malformed_hsa_id": 400}


@dataclass(frozen=True)
class Admin:
    hsa_id: str
    actor: str


async def _admin(request: Request) -> Admin | Response:
    """The logged-in administrator, or the response that refuses (or starts a login)."""
    login = siths_login(request)
    if login is None:
        return RedirectResponse("/login?next=/admin", status_code=303)

    def check() -> bool:
        with database_of(request).session() as session:
            return admin_by_hsa_id(session, login.hsa_id) is not None

    if not await run_in_threadpool(check):
        logger.warning("administrator page refused to %s", login.hsa_id)
        return error_page(request, "not_admin")
    return Admin(login.hsa_id, audit.web_actor(login.hsa_id, login.full_name))


async def _form(request: Request, **limits: int) -> Any | Response:
    form = await request.form(**limits)
    if not csrf_ok(request, form.get("csrf")):
        return error_page(request, "csrf")
    return form


@router.get("")
async def overview(request: Request) -> Response:
    admin = await _admin(request)
    if isinstance(admin, Response):
        return admin
    report, directory_error = await run_in_threadpool(_readiness, request)
    return render(
        request,
        "admin/overview.html",
        {"report": report, "reasons": REASONS, "directory_error": directory_error},
    )


@router.get("/users")
async def users(request: Request, q: str = "") -> Response:
    admin = await _admin(request)
    if isinstance(admin, Response):
        return admin
    query = q.strip()[:100]
    rows = await run_in_threadpool(_user_rows, database_of(request), query)
    return render(
        request,
        "admin/users.html",
        {"rows": rows[:MAX_LISTED_USERS], "total": len(rows), "q": query},
    )


@router.get("/users/{user_id}")
async def user_page(request: Request, user_id: int) -> Response:
    admin = await _admin(request)
    if isinstance(admin, Response):
        return admin
    return await _render_user(request, user_id, request.session.pop(FLASH_KEY, None), None)


@router.post("/users/{user_id}/hsa-id")
async def register(request: Request, user_id: int) -> Response:
    admin = await _admin(request)
    if isinstance(admin, Response):
        return admin
    form = await _form(request, max_files=0, max_fields=5)
    if isinstance(form, Response):
        return form
    hsa_id = str(form.get("hsa_id", "")).strip()[:100]
    replace = form.get("replace") == "yes"

    def change() -> str:
        with database_of(request).session() as session:
            user = session.get(User, user_id)
            if user is None:
                return ""
            done = register_hsa_id(
                session, user.windows_account, hsa_id, admin.actor, replace=replace
            )
            return "changed" if done.changed else "unchanged"

    return await _change(request, user_id, change, f"HSA-id {hsa_id}")


@router.post("/users/{user_id}/move")
async def move(request: Request, user_id: int) -> Response:
    admin = await _admin(request)
    if isinstance(admin, Response):
        return admin
    form = await _form(request, max_files=0, max_fields=5)
    if isinstance(form, Response):
        return form

    def change() -> str:
        with database_of(request).session() as session:
            user = session.get(User, user_id)
            if user is None:
                return ""
            moved = move_permissions(session, user.windows_account, admin.actor)
            return "changed" if moved else "unchanged"

    return await _change(request, user_id, change, "behörigheter flyttade / permissions moved")


async def _change(request: Request, user_id: int, change: Any, what: str) -> Response:
    try:
        outcome = await run_in_threadpool(change)
    except ChangeRefused as refused:
        status = _STATUS.get(refused.problem.code, 409)
        return await _render_user(request, user_id, None, refused.problem, status)
    if not outcome:
        return error_page(request, "not_found")
    request.session[FLASH_KEY] = {"outcome": outcome, "what": what}
    return RedirectResponse(f"/admin/users/{user_id}", status_code=303)


async def _render_user(
    request: Request,
    user_id: int,
    flash: dict[str, str] | None,
    problem: Problem | None,
    status_code: int = 200,
) -> Response:
    view = await run_in_threadpool(_user_view, database_of(request), user_id)
    if view is None:
        return error_page(request, "not_found")
    context = {"user": view, "flash": flash, "problem": problem}
    return render(request, "admin/user.html", context, status_code)


@router.get("/readiness")
async def readiness(request: Request) -> Response:
    admin = await _admin(request)
    if isinstance(admin, Response):
        return admin
    report, directory_error = await run_in_threadpool(_readiness, request)
    return render(
        request,
        "admin/readiness.html",
        {
            "report": report,
            "reasons": REASONS,
            "directory_error": directory_error,
            "portal_url": settings_of(request).portal_url,
        },
    )


@router.get("/readiness.csv")
async def readiness_csv(request: Request) -> Response:
    admin = await _admin(request)
    if isinstance(admin, Response):
        return admin
    report, _error = await run_in_threadpool(_readiness, request)
    return _csv_download(report_csv(report), f"beredskapsrapport-{today().isoformat()}.csv")


@router.get("/export.csv")
async def export_csv(request: Request) -> Response:
    admin = await _admin(request)
    if isinstance(admin, Response):
        return admin

    def export() -> str:
        with database_of(request).session() as session:
            return write_export(list_users(session))

    text = await run_in_threadpool(export)
    return _csv_download(text, f"treserva-konton-{today().isoformat()}.csv")


@router.get("/import")
async def import_form(request: Request) -> Response:
    admin = await _admin(request)
    if isinstance(admin, Response):
        return admin
    return render(request, "admin/import.html", {"report": None})


@router.post("/import")
async def import_upload(request: Request) -> Response:
    admin = await _admin(request)
    if isinstance(admin, Response):
        return admin
    form = await _form(request, max_files=1, max_fields=5)
    if isinstance(form, Response):
        return form
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        return render(request, "admin/import.html", {"report": None, "no_file": True}, 400)
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        return error_page(request, "upload_too_large")
    only_good_rows = form.get("only_good_rows") == "yes"

    def run() -> ImportReport:
        with database_of(request).session() as session:
            return import_users(session, data, admin.actor, only_good_rows=only_good_rows)

    report = await run_in_threadpool(run)
    status = 400 if report.problems and not report.applied else 200
    context = {
        "report": report,
        "filename": upload.filename or "",
        "only_good_rows": only_good_rows,
    }
    return render(request, "admin/import.html", context, status)


@router.get("/audit")
async def audit_trail(request: Request) -> Response:
    admin = await _admin(request)
    if isinstance(admin, Response):
        return admin

    def events() -> list[dict[str, str]]:
        with database_of(request).session() as session:
            return [
                {
                    "at": f"{event.at:%Y-%m-%d %H:%M:%S}",
                    "actor": event.actor,
                    "action": event.action,
                    "windows_account": event.windows_account,
                    "detail": event.detail,
                }
                for event in audit.recent_events(session, 500)
            ]

    return render(request, "admin/audit.html", {"events": await run_in_threadpool(events)})


def _csv_download(text: str, filename: str) -> Response:
    # UTF-8 with BOM, so that Excel shows å, ä and ö right.
    return Response(
        "\ufeff" + text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _readiness(request: Request) -> tuple[ReadinessReport, str | None]:
    settings = settings_of(request)
    known = None
    error = None
    if settings.idp_directory_file is not None:
        try:
            known = load_known_hsa_ids(settings.idp_directory_file)
        except DirectoryFileError as failure:
            error = str(failure)
    with database_of(request).session() as session:
        return build_report(session, settings.cutover_date, known), error


def _user_rows(database: Database, query: str) -> list[dict[str, Any]]:
    needle = query.lower()
    with database.session() as session:
        rows = []
        for user in list_users(session):
            haystack = f"{user.windows_account} {user.display_name} {user.hsa_id or ''}".lower()
            if needle and needle not in haystack:
                continue
            rows.append(
                {
                    "id": user.id,
                    "windows_account": user.windows_account,
                    "display_name": user.display_name,
                    "hsa_id": user.hsa_id,
                    "windows": len(permissions_on(user, LOGIN_WINDOWS)),
                    "siths": len(permissions_on(user, LOGIN_SITHS)),
                }
            )
        return rows


def _user_view(database: Database, user_id: int) -> dict[str, Any] | None:
    with database.session() as session:
        user = session.get(User, user_id, options=[selectinload(User.permissions)])
        if user is None:
            return None
        return {
            "id": user.id,
            "windows_account": user.windows_account,
            "display_name": user.display_name,
            "hsa_id": user.hsa_id,
            "windows": [(p.role, p.unit) for p in permissions_on(user, LOGIN_WINDOWS)],
            "siths": [(p.role, p.unit) for p in permissions_on(user, LOGIN_SITHS)],
        }

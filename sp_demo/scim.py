"""SCIM 2.0 (RFC 7643/7644) for Treserva's user register, and the permission-move integration.

``/scim/v2/Users``: list (``filter=userName eq "…"``), read, create, and PATCH (``active``,
``displayName`` and the HSA-ID in Treserva's extension schema); deactivating is PATCH
``active: false`` — the account is kept, it just cannot be used. Every resource carries a weak
ETag (``meta.version`` and the ``ETag`` header) computed from its content; a PATCH with an
``If-Match`` that no longer matches is refused with 412, so two writers cannot overwrite each
other unseen. ``/integration/v1/permission-moves`` carries out the existing permission move
(:func:`sp_demo.users.move_permissions`) for a support ticket.

Both are for the city's service portal, authenticated by one bearer token
(``SP_DEMO_SCIM_TOKEN``); without one configured they do not exist (404). Every change goes
through :mod:`sp_demo.users` and so into the audit trail, with the actor ``scim`` or the ticket.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sp_demo import audit
from sp_demo.db import User, find_user_by_windows_account, list_users
from sp_demo.pages import database_of, settings_of
from sp_demo.problems import ChangeRefused
from sp_demo.users import describe_permissions, move_permissions, register_hsa_id

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
TRESERVA_SCHEMA = "urn:goteborg:params:scim:schemas:extension:treserva:1.0:User"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
MEDIA_TYPE = "application/scim+json"
HSA_ID_PATH = f"{TRESERVA_SCHEMA}:hsaId"
MAX_BODY_BYTES = 64 * 1024
SCIM_ACTOR = "scim"


class ScimError(Exception):
    def __init__(self, status: int, detail: str, scim_type: str = "") -> None:
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {
            "schemas": [ERROR_SCHEMA],
            "status": str(self.status),
            "detail": self.detail,
        }
        if self.scim_type:
            body["scimType"] = self.scim_type
        return JSONResponse(body, status_code=self.status, media_type=MEDIA_TYPE)


def require_token(request: Request) -> None:
    """The portal's bearer token, compared in constant time; 404 while none is configured."""
    expected = settings_of(request).scim_token
    if not expected:
        raise HTTPException(404)
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(401, headers={"WWW-Authenticate": 'Bearer realm="treserva-scim"'})


router = APIRouter(prefix="/scim/v2", dependencies=[Depends(require_token)])
integration_router = APIRouter(prefix="/integration/v1", dependencies=[Depends(require_token)])


def _content(user: User) -> dict[str, Any]:
    extension = {"hsaId": user.hsa_id} if user.hsa_id else {}
    return {
        "userName": user.windows_account,
        "displayName": user.display_name,
        "active": user.active,
        TRESERVA_SCHEMA: extension,
    }


def etag(user: User) -> str:
    digest = hashlib.sha256(json.dumps(_content(user), sort_keys=True).encode()).hexdigest()
    return f'W/"{digest[:20]}"'


def resource(request: Request, user: User) -> dict[str, Any]:
    base = settings_of(request).base_url
    return {
        "schemas": [USER_SCHEMA, TRESERVA_SCHEMA],
        "id": str(user.id),
        **_content(user),
        "meta": {
            "resourceType": "User",
            "location": f"{base}/scim/v2/Users/{user.id}",
            "version": etag(user),
        },
    }


def _answer(request: Request, user: User, status: int = 200) -> JSONResponse:
    body = resource(request, user)
    headers = {"ETag": body["meta"]["version"]}
    if status == 201:
        headers["Location"] = body["meta"]["location"]
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


async def _json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ScimError(413, "request too large")
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise ScimError(400, "the body is not JSON", "invalidSyntax") from exc
    if not isinstance(value, dict):
        raise ScimError(400, "the body is not a JSON object", "invalidSyntax")
    return value


def _find(session: Any, user_id: str) -> User:
    if not user_id.isdigit():
        raise ScimError(404, f"no user {user_id[:20]}")
    user = session.get(User, int(user_id))
    if user is None:
        raise ScimError(404, f"no user {user_id}")
    return user


def _refused(refused: ChangeRefused) -> ScimError:
    status = 404 if refused.problem.code == "unknown_account" else 409
    scim_type = "invalidValue" if refused.problem.code == "malformed_hsa_id" else "uniqueness"
    return ScimError(400 if scim_type == "invalidValue" else status, refused.problem.en, scim_type)


@router.get("/Users")
async def list_scim_users(request: Request, filter: str = "") -> Response:
    user_name = ""
    if filter:
        attribute, _, rest = filter.partition(" eq ")
        # The value is a JSON string (RFC 7644 §3.4.2.2): a backslash comes escaped.
        try:
            value = json.loads(rest) if attribute.strip() == "userName" else None
        except ValueError:
            value = None
        if not isinstance(value, str):
            return ScimError(
                400, 'only filter=userName eq "<JSON string>" is supported', "invalidFilter"
            ).response()
        user_name = value

    def find() -> list[dict[str, Any]]:
        with database_of(request).session() as session:
            if user_name:
                user = find_user_by_windows_account(session, user_name)
                return [] if user is None else [resource(request, user)]
            return [resource(request, user) for user in list_users(session)]

    found = await run_in_threadpool(find)
    body = {
        "schemas": [LIST_SCHEMA],
        "totalResults": len(found),
        "startIndex": 1,
        "itemsPerPage": len(found),
        "Resources": found,
    }
    return JSONResponse(body, media_type=MEDIA_TYPE)


@router.get("/Users/{user_id}")
async def read_user(request: Request, user_id: str) -> Response:
    def read() -> User:
        with database_of(request).session() as session:
            return _find(session, user_id)

    try:
        return _answer(request, await run_in_threadpool(read))
    except ScimError as error:
        return error.response()


@router.post("/Users")
async def create_user(request: Request) -> Response:
    try:
        body = await _json(request)
        user_name = body.get("userName")
        display_name = body.get("displayName")
        if not isinstance(user_name, str) or not user_name.strip():
            raise ScimError(400, "userName (the Windows account) is required", "invalidValue")
        if not isinstance(display_name, str) or not display_name.strip():
            raise ScimError(400, "displayName is required", "invalidValue")
        hsa_id = (body.get(TRESERVA_SCHEMA) or {}).get("hsaId")
        active = body.get("active", True)
        if not isinstance(active, bool):
            raise ScimError(400, "active is true or false", "invalidValue")
    except ScimError as error:
        return error.response()

    def create() -> User:
        with database_of(request).session() as session:
            if find_user_by_windows_account(session, user_name) is not None:
                raise ScimError(409, f"userName {user_name} exists", "uniqueness")
            user = User(
                windows_account=user_name.strip(),
                display_name=display_name.strip(),
                active=active,
            )
            session.add(user)
            session.flush()
            audit.record(session, SCIM_ACTOR, "scim_create", windows_account=user.windows_account)
            if hsa_id:
                register_hsa_id(session, user.windows_account, str(hsa_id), SCIM_ACTOR)
            return user

    try:
        return _answer(request, await run_in_threadpool(create), 201)
    except ScimError as error:
        return error.response()
    except ChangeRefused as refused:
        return _refused(refused).response()


def _apply(session: Any, user: User, operation: Any) -> None:
    if not isinstance(operation, dict):
        raise ScimError(400, "an operation is an object", "invalidSyntax")
    op = str(operation.get("op", "")).lower()
    if op not in ("add", "replace"):
        raise ScimError(400, f"op {op!r} is not supported (add, replace)", "invalidSyntax")
    path, value = operation.get("path"), operation.get("value")
    changes: dict[str, Any] = {}
    if path is None and isinstance(value, dict):
        changes = dict(value)
        changes.update(
            {
                f"{TRESERVA_SCHEMA}:{k}": v
                for k, v in (value.pop(TRESERVA_SCHEMA, None) or {}).items()
            }
        )
        changes.pop(TRESERVA_SCHEMA, None)
    elif isinstance(path, str):
        changes = {path: value}
    for name, new in changes.items():
        if name == "active":
            if not isinstance(new, bool):
                raise ScimError(400, "active is true or false", "invalidValue")
            if user.active != new:
                user.active = new
                audit.record(
                    session,
                    SCIM_ACTOR,
                    "scim_activate" if new else "scim_deactivate",
                    windows_account=user.windows_account,
                )
        elif name == "displayName":
            if not isinstance(new, str) or not new.strip():
                raise ScimError(400, "displayName is text", "invalidValue")
            user.display_name = new.strip()
        elif name == HSA_ID_PATH:
            if not isinstance(new, str):
                raise ScimError(400, "hsaId is text", "invalidValue")
            register_hsa_id(session, user.windows_account, new, SCIM_ACTOR)
        else:
            raise ScimError(400, f"path {str(name)[:80]!r} is not supported", "invalidPath")


@router.patch("/Users/{user_id}")
async def patch_user(request: Request, user_id: str) -> Response:
    try:
        body = await _json(request)
        if PATCH_SCHEMA not in body.get("schemas", []):
            raise ScimError(400, f"schemas must name {PATCH_SCHEMA}", "invalidSyntax")
        operations = body.get("Operations")
        if not isinstance(operations, list) or not operations:
            raise ScimError(400, "Operations is a non-empty list", "invalidSyntax")
    except ScimError as error:
        return error.response()
    if_match = request.headers.get("if-match")

    def patch() -> User:
        with database_of(request).session() as session:
            user = _find(session, user_id)
            if if_match is not None and if_match != "*" and if_match != etag(user):
                raise ScimError(412, "the user changed since it was read (ETag differs)")
            for operation in operations:
                _apply(session, user, operation)
            session.flush()
            return user

    try:
        return _answer(request, await run_in_threadpool(patch))
    except ScimError as error:
        return error.response()
    except ChangeRefused as refused:
        return _refused(refused).response()


@integration_router.post("/permission-moves")
async def permission_move(request: Request) -> Response:
    """Move an account's permissions from its Windows login to its SITHS login, for a
    support ticket: ``{"userName", "ticket"}`` → ``{"moved": [...], "hsaId"}``."""
    try:
        body = await _json(request)
        user_name, ticket = body.get("userName"), body.get("ticket")
        if not isinstance(user_name, str) or not isinstance(ticket, str) or not ticket:
            raise ScimError(400, "userName and ticket are required", "invalidValue")
    except ScimError as error:
        return error.response()

    def move() -> dict[str, Any]:
        with database_of(request).session() as session:
            moved = move_permissions(session, user_name, f"support ticket {ticket[:80]}")
            user = find_user_by_windows_account(session, user_name)
            assert user is not None
            return {
                "userName": user_name,
                "hsaId": user.hsa_id,
                "moved": [{"role": p.role, "unit": p.unit} for p in moved],
                "description": describe_permissions(moved),
            }

    try:
        return JSONResponse(await run_in_threadpool(move))
    except ChangeRefused as refused:
        return JSONResponse(
            {"code": refused.problem.code, "sv": refused.problem.sv, "en": refused.problem.en},
            status_code=404 if refused.problem.code == "unknown_account" else 409,
        )

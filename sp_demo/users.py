"""Changes to Treserva's user register, each recorded in the audit trail with who made it.

The moves of the cut-over: register an HSA-ID on an account (so its SITHS login is recognised)
and move the account's permissions from its Windows login to its SITHS login. Plus the one
permission that opens the administrator page. Every function works in the caller's session
(transaction): a refused change raises :class:`~sp_demo.problems.ChangeRefused` and the caller
rolls back, so nothing half-done is ever committed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from sp_demo import audit, problems
from sp_demo.db import (
    LOGIN_SITHS,
    LOGIN_WINDOWS,
    Permission,
    User,
    find_user_by_hsa_id,
    find_user_by_windows_account,
)
from sp_demo.hsa_id import is_valid_hsa_id
from sp_demo.problems import ChangeRefused

# The permission that opens the administrator page. It counts only on the SITHS login: the
# administrator page is reached through the IdP like everything else.
ADMIN_ROLE = "behörighetsadministratör"
ADMIN_UNIT = "Treserva"


@dataclass(frozen=True)
class Registration:
    """What :func:`register_hsa_id` did: ``previous`` is the HSA-ID it replaced, if any."""

    windows_account: str
    hsa_id: str
    previous: str | None
    changed: bool


def describe_permissions(permissions: list[Permission]) -> str:
    """``role, unit; role, unit`` — the form used in CSV files and the audit trail."""
    return "; ".join(f"{p.role}, {p.unit}" for p in permissions)


def permissions_on(user: User, login: str) -> list[Permission]:
    return [p for p in user.permissions if p.login == login]


def require_account(session: Session, windows_account: str) -> User:
    user = find_user_by_windows_account(session, windows_account)
    if user is None:
        raise ChangeRefused(problems.unknown_account(windows_account))
    return user


def check_hsa_id_free(session: Session, hsa_id: str, for_user: User) -> None:
    """Refuse an HSA-ID that is malformed or already registered on another account."""
    if not is_valid_hsa_id(hsa_id):
        raise ChangeRefused(problems.malformed_hsa_id(hsa_id))
    holder = find_user_by_hsa_id(session, hsa_id)
    if holder is not None and holder.id != for_user.id:
        raise ChangeRefused(problems.hsa_id_taken(hsa_id, holder.windows_account))


def register_hsa_id(
    session: Session, windows_account: str, hsa_id: str, actor: str, *, replace: bool = False
) -> Registration:
    """Register ``hsa_id`` on the account. An account that has another HSA-ID keeps it unless
    ``replace`` (a deliberate correction on the administrator page). Registering the HSA-ID the
    account already has changes nothing and records nothing."""
    hsa_id = hsa_id.strip()
    user = require_account(session, windows_account)
    check_hsa_id_free(session, hsa_id, user)
    previous = user.hsa_id
    if previous == hsa_id:
        return Registration(user.windows_account, hsa_id, previous, changed=False)
    if previous is not None and not replace:
        raise ChangeRefused(problems.hsa_id_differs(user.windows_account, previous))
    user.hsa_id = hsa_id
    session.flush()
    detail = f"{previous} -> {hsa_id}" if previous else hsa_id
    action = "change_hsa_id" if previous else "register_hsa_id"
    audit.record(session, actor, action, windows_account=user.windows_account, detail=detail)
    return Registration(user.windows_account, hsa_id, previous, changed=True)


def move_permissions(session: Session, windows_account: str, actor: str) -> list[Permission]:
    """Move every permission of the account's Windows login to its SITHS login; return them.

    Refused while the account has no HSA-ID (the SITHS login would be nobody's).
    """
    user = require_account(session, windows_account)
    if user.hsa_id is None:
        raise ChangeRefused(problems.no_hsa_id_yet(user.windows_account))
    moved = permissions_on(user, LOGIN_WINDOWS)
    if not moved:
        return []
    for permission in moved:
        permission.login = LOGIN_SITHS
    session.flush()
    audit.record(
        session,
        actor,
        "move_permissions",
        windows_account=user.windows_account,
        detail=f"{user.hsa_id}: {describe_permissions(moved)}",
    )
    return moved


def grant_admin(session: Session, hsa_id: str, actor: str) -> bool:
    """Give the account with ``hsa_id`` the administrator permission; False if it had it."""
    user = find_user_by_hsa_id(session, hsa_id)
    if user is None:
        raise ChangeRefused(problems.no_account_for(hsa_id))
    if is_admin(user):
        return False
    user.permissions.append(Permission(role=ADMIN_ROLE, unit=ADMIN_UNIT, login=LOGIN_SITHS))
    session.flush()
    audit.record(session, actor, "grant_admin", windows_account=user.windows_account, detail=hsa_id)
    return True


def is_admin(user: User) -> bool:
    """True if the account's SITHS login holds the administrator permission."""
    return any(
        p.role == ADMIN_ROLE and p.unit == ADMIN_UNIT for p in permissions_on(user, LOGIN_SITHS)
    )


def admin_by_hsa_id(session: Session, hsa_id: str) -> User | None:
    """The account for ``hsa_id`` if it is an administrator, else None."""
    user = find_user_by_hsa_id(session, hsa_id)
    return user if user is not None and is_admin(user) else None

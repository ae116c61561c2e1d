"""Who may do what in the portal: roles granted to an HSA-ID, kept in the portal's database.

An IT-kontaktperson acts for the organisation of the HSA-ID they log in with (a provider's
HSA-ID can only order for that provider); an Administratör EKU is one of Göteborgs Stad's.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.hsa_id import InvalidHsaId, parse_hsa_id
from portal import audit
from portal.config import GOTEBORGS_STAD
from portal.models import EKU_ADMIN, IT_CONTACT, ROLES, RoleGrant


class RoleError(ValueError):
    """A grant the portal refuses; the message says why."""


def grant(
    session: Session, hsa_id: str, role: str, actor: str, *, name: str = "", mail: str = ""
) -> RoleGrant:
    """Grant ``role`` to ``hsa_id`` (idempotent: an existing grant gets the new name/mail)."""
    try:
        parsed = parse_hsa_id(hsa_id)
    except InvalidHsaId as exc:
        raise RoleError(str(exc)) from exc
    if role not in ROLES:
        raise RoleError(f"role is one of {', '.join(ROLES)}, not {role!r}")
    if role == EKU_ADMIN and parsed.organisation_number != GOTEBORGS_STAD:
        raise RoleError(f"an EKU administrator has a Göteborgs Stad HSA-ID, not {hsa_id}")
    provider = parsed.organisation_number if role == IT_CONTACT else ""
    existing = session.scalars(
        select(RoleGrant).where(
            RoleGrant.hsa_id == hsa_id, RoleGrant.role == role, RoleGrant.provider_org == provider
        )
    ).one_or_none()
    row = existing or RoleGrant(hsa_id=hsa_id, role=role, provider_org=provider)
    row.name, row.mail = name, mail
    session.add(row)
    session.flush()
    audit.record(session, actor, "role_granted", detail=f"{hsa_id} {role} {provider}".strip())
    return row


def list_grants(session: Session) -> list[RoleGrant]:
    return list(session.scalars(select(RoleGrant).order_by(RoleGrant.hsa_id, RoleGrant.role)))

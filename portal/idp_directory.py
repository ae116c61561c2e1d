"""Telling the IdP's directory about a new HSA-ID, through the IdP's own command line.

``idp people add --same-person-as <the card's HSA-ID>`` is the IdP operator's supported way
to add a tjänste-id to a person; the portal runs it (``Settings.idp_command``) with the IdP's
settings (``Settings.idp_environment``, the ``IDP_*`` variables), so the IdP's rules for
entries (HSA-ID format, names, linking) apply unchanged and the portal never writes the IdP's
tables itself. That assumes the portal runs where the IdP's CLI can reach its database, as in
the embedded deployment and the demo.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import audit
from portal.config import Settings
from portal.models import ISSUED, STATES, Order

ALREADY_PRESENT = "is already in the directory"


@dataclass(frozen=True)
class DirectoryOutcome:
    ok: bool
    detail: str


def add_service_id(
    settings: Settings,
    *,
    hsa_id: str,
    given_name: str,
    surname: str,
    mail: str,
    same_person_as: str,
) -> DirectoryOutcome:
    """Add ``hsa_id`` as another tjänste-id of the person holding ``same_person_as``.

    An HSA-ID the directory already has counts as done (a retry after a lost answer).
    """
    command = [
        str(settings.idp_command),
        "people",
        "add",
        "--hsa-id",
        hsa_id,
        "--given-name",
        given_name,
        "--surname",
        surname,
        "--organisation",
        "Göteborgs Stad",
        "--mail",
        mail,
        "--same-person-as",
        same_person_as,
    ]
    try:
        result = subprocess.run(
            command,
            env={**os.environ, **settings.idp_environment},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return DirectoryOutcome(False, f"{type(exc).__name__}: {exc}")
    output = (result.stdout + result.stderr).strip()
    if result.returncode == 0 or ALREADY_PRESENT in output:
        return DirectoryOutcome(True, output[:500])
    return DirectoryOutcome(False, output[:500])


def sync_pending(
    settings: Settings, sessions: Callable[[], AbstractContextManager[Session]]
) -> int:
    """Tell the IdP about every issued HSA-ID it has not confirmed yet; return how many
    succeeded. Run after each issue and again by the app's background loop, so an IdP that
    was unreachable catches up."""
    with sessions() as session:
        pending = session.scalars(
            select(Order).where(
                Order.state.in_(STATES[STATES.index(ISSUED) :]),
                Order.idp_directory_done.is_(False),
            )
        ).all()
        done = 0
        for order in pending:
            assert order.hsa_id is not None and order.card_hsa_id is not None
            outcome = add_service_id(
                settings,
                hsa_id=order.hsa_id,
                given_name=order.given_name,
                surname=order.surname,
                mail=order.mail,
                same_person_as=order.card_hsa_id,
            )
            if outcome.ok:
                order.idp_directory_done = True
                done += 1
            audit.record(
                session,
                "portal",
                "idp_directory_added" if outcome.ok else "idp_directory_failed",
                order_id=order.id,
                detail=f"{order.hsa_id} same person as {order.card_hsa_id}: {outcome.detail}",
            )
        return done

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
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from portal import audit
from portal.config import Settings
from portal.models import ISSUED, STATES, Order


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

    An HSA-ID the directory already has is a failure like any other: it may be another
    person's, and only a person can tell (the audit trail and the readiness board show it).
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
    if result.returncode == 0:
        return DirectoryOutcome(True, output[:500])
    return DirectoryOutcome(False, output[:500])


# One sync at a time in a process: the request that issued a certificate and the background
# loop would otherwise both tell the IdP about the same HSA-ID.
_SYNC_LOCK = threading.Lock()


def sync_pending(
    settings: Settings, sessions: Callable[[], AbstractContextManager[Session]]
) -> int:
    """Tell the IdP about every issued HSA-ID it has not confirmed yet; return how many
    succeeded. Run after each issue and again by the app's background loop, so an IdP that
    was unreachable catches up. The IdP is asked outside any transaction; each outcome is
    recorded in a transaction of its own, and an order another process has marked done
    meanwhile is left as it is."""
    with _SYNC_LOCK:
        with sessions() as session:
            pending = [
                (
                    order.id,
                    order.hsa_id,
                    order.card_hsa_id,
                    order.given_name,
                    order.surname,
                    order.mail,
                )
                for order in session.scalars(
                    select(Order).where(
                        Order.state.in_(STATES[STATES.index(ISSUED) :]),
                        Order.idp_directory_done.is_(False),
                    )
                )
            ]
        done = 0
        for order_id, hsa_id, card_hsa_id, given_name, surname, mail in pending:
            assert hsa_id is not None and card_hsa_id is not None
            outcome = add_service_id(
                settings,
                hsa_id=hsa_id,
                given_name=given_name,
                surname=surname,
                mail=mail,
                same_person_as=card_hsa_id,
            )
            with sessions() as session:
                if outcome.ok:
                    # A plain UPDATE: the order's version is for people's actions, and this
                    # flag is only ever set, never taken back.
                    marked = session.execute(
                        update(Order)
                        .where(Order.id == order_id, Order.idp_directory_done.is_(False))
                        .values(idp_directory_done=True)
                    )
                    if not marked.rowcount:
                        continue
                    done += 1
                audit.record(
                    session,
                    "portal",
                    "idp_directory_added" if outcome.ok else "idp_directory_failed",
                    order_id=order_id,
                    detail=f"{hsa_id} same person as {card_hsa_id}: {outcome.detail}",
                )
        return done

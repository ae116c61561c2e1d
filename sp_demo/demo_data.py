"""A generated demo register of a few hundred invented accounts, for rehearsing the cut-over.

Deterministic, so a test can say what the readiness report must find. Account number ``i``
(counting from 0) is:

- ``i % 10 == 3``: no HSA-ID, permissions on the Windows login;
- ``i % 10 == 6``: HSA-ID registered, permissions not yet moved;
- ``i % 20 == 9``: HSA-ID registered and permissions moved, but unknown at the IdP;
- otherwise ready: HSA-ID known at the IdP, permissions moved.

Every name is invented; HSA-IDs are ``SE2120001355-D`` + a number (no card carries them).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from sp_demo import audit
from sp_demo.db import LOGIN_SITHS, LOGIN_WINDOWS, Permission, User

GIVEN_NAMES = (
    "Agnes", "Alva", "Arvid", "Astrid", "Axel", "Birgitta", "Bo", "Dagny", "Edvin", "Elsa",
    "Folke", "Greta", "Harald", "Ingrid", "Ivar", "Karin", "Linnea", "Majken", "Nils", "Ove",
    "Ragnar", "Sigrid", "Sten", "Tove", "Ulla", "Valter", "Vera", "Yngve",
)  # fmt: skip
SURNAMES = (
    "Almgren", "Bergkvist", "Dahlin", "Ekström", "Fors", "Grahn", "Hedlund", "Holmgren",
    "Jansson", "Kron", "Lindqvist", "Lund", "Nyström", "Ohlsson", "Palm", "Rask", "Sandberg",
    "Strand", "Torstensson", "Wallin", "Åberg", "Öberg",
)  # fmt: skip
ROLES = ("handläggare", "undersköterska", "sjuksköterska", "biståndshandläggare", "chef")
UNITS = (
    "Hemtjänst Centrum", "Hemtjänst Majorna", "Hemtjänst Lundby", "Äldreboende Guldheden",
    "Äldreboende Kortedala", "Biståndsenheten Lundby", "Biståndsenheten Hisingen",
    "Korttidsboende Frölunda", "Dagverksamhet Angered",
)  # fmt: skip


@dataclass(frozen=True)
class DemoAccount:
    windows_account: str
    display_name: str
    hsa_id: str | None
    moved: bool
    known_at_idp: bool
    permissions: tuple[tuple[str, str], ...]


def demo_accounts(count: int) -> list[DemoAccount]:
    """The first ``count`` generated accounts (the same every time)."""
    accounts = []
    for i in range(count):
        given = GIVEN_NAMES[i % len(GIVEN_NAMES)]
        surname = SURNAMES[(i * 7) % len(SURNAMES)]
        login = _ascii(f"{given}.{surname}").lower()
        has_hsa_id = i % 10 != 3
        permissions = tuple(
            (ROLES[(i + k) % len(ROLES)], UNITS[(i * 3 + k) % len(UNITS)]) for k in range(1 + i % 3)
        )
        accounts.append(
            DemoAccount(
                windows_account=f"GBGSTAD\\{login}{i:04d}",
                display_name=f"{given} {surname}",
                hsa_id=f"SE2120001355-D{i:05d}" if has_hsa_id else None,
                moved=has_hsa_id and i % 10 != 6,
                known_at_idp=has_hsa_id and i % 20 != 9,
                permissions=permissions,
            )
        )
    return accounts


def add_demo_accounts(session: Session, count: int, actor: str) -> list[DemoAccount]:
    """Add the generated accounts that are missing (by Windows account); return all of them."""
    accounts = demo_accounts(count)
    existing = set(session.scalars(select(User.windows_account)))
    added = 0
    for account in accounts:
        if account.windows_account in existing:
            continue
        login = LOGIN_SITHS if account.moved else LOGIN_WINDOWS
        session.add(
            User(
                windows_account=account.windows_account,
                display_name=account.display_name,
                hsa_id=account.hsa_id,
                permissions=[
                    Permission(role=role, unit=unit, login=login)
                    for role, unit in account.permissions
                ],
            )
        )
        added += 1
    session.flush()
    audit.record(session, actor, "generate_demo_accounts", detail=f"{added} accounts added")
    return accounts


def directory_csv(accounts: list[DemoAccount]) -> str:
    """The IdP's directory of these accounts, in ``idp people import`` form: the ones known."""
    lines = ["hsa_id,given_name,surname,title,organisation,mail,person_key"]
    for account in accounts:
        if account.known_at_idp and account.hsa_id:
            given, surname = account.display_name.split(" ", 1)
            lines.append(f"{account.hsa_id},{given},{surname},,Göteborgs Stad,,")
    return "\n".join(lines) + "\n"


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))

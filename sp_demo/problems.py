"""Why a change to the user register is refused: a stable code and a text in Swedish and English.

Shared by the administrator page, the CSV import and the command line, so the same mistake gets
the same answer everywhere. Texts name the offending value and say what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

HSA_ID_FORM_SV = "SE + 10 siffror + bindestreck + id, högst 31 tecken, t.ex. SE2120001355-E0001"
HSA_ID_FORM_EN = "SE + 10 digits + hyphen + id, at most 31 characters, e.g. SE2120001355-E0001"


@dataclass(frozen=True)
class Problem:
    code: str
    sv: str
    en: str


class ChangeRefused(Exception):
    """A change was not made; ``problem`` says why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.code}: {problem.en}")
        self.problem = problem


def unknown_account(account: str) -> Problem:
    return Problem(
        "unknown_account",
        f"Kontot ”{account}” finns inte i Treserva.",
        f"The account “{account}” does not exist in Treserva.",
    )


def no_account_for(hsa_id: str) -> Problem:
    return Problem(
        "unknown_hsa_id",
        f"Inget konto i Treserva har HSA-id {hsa_id}.",
        f"No account in Treserva has HSA-ID {hsa_id}.",
    )


def missing_account() -> Problem:
    return Problem("missing_account", "Windows-konto saknas.", "The Windows account is missing.")


def malformed_hsa_id(value: str) -> Problem:
    return Problem(
        "malformed_hsa_id",
        f"”{value}” är inte ett HSA-id ({HSA_ID_FORM_SV}).",
        f"“{value}” is not an HSA-ID ({HSA_ID_FORM_EN}).",
    )


def hsa_id_taken(hsa_id: str, other_account: str) -> Problem:
    return Problem(
        "hsa_id_taken",
        f"HSA-id {hsa_id} är redan registrerat på kontot {other_account}. Ett HSA-id kan bara "
        "höra till ett konto.",
        f"HSA-ID {hsa_id} is already registered on the account {other_account}. An HSA-ID can "
        "belong to one account only.",
    )


def hsa_id_differs(account: str, current: str) -> Problem:
    return Problem(
        "hsa_id_differs",
        f"Kontot {account} har redan HSA-id {current}. Ändra det på administratörssidan om det "
        "är fel.",
        f"The account {account} already has HSA-ID {current}. Change it on the administrator "
        "page if it is wrong.",
    )


def no_hsa_id_yet(account: str) -> Problem:
    return Problem(
        "no_hsa_id",
        f"Kontot {account} har inget HSA-id. Registrera HSA-id först, flytta sedan behörigheterna.",
        f"The account {account} has no HSA-ID. Register the HSA-ID first, then move the "
        "permissions.",
    )

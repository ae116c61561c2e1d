"""The login policy: the rules every login method applies, held once and built at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from idp.config import Settings


@dataclass(frozen=True)
class LoginPolicy:
    """``accepted_organisations``: the organisation numbers whose cards may log in and whose
    tjänste-ids are offered. The one holder of that setting: the certificate validator and the
    directory look-up both get it from here."""

    accepted_organisations: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginPolicy:
        return cls(accepted_organisations=frozenset(settings.accepted_organisations))

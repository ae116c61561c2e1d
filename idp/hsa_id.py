"""HSA-ID: the identity of a person's commission (tjänste-id) in the Swedish HSA directory.

Format: ``SE`` + the directory owner's 10-digit organisation number + ``-`` + one or more of
``[A-Za-z0-9]``, at most 31 characters in all, e.g. ``SE2120001355-E0001``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LENGTH = 31
_PATTERN = re.compile(r"SE(?P<org>[0-9]{10})-(?P<local>[A-Za-z0-9]+)")


class InvalidHsaId(ValueError):
    """The text is not an HSA-ID; the message says which rule it breaks."""


@dataclass(frozen=True)
class HsaId:
    value: str
    organisation_number: str

    def __str__(self) -> str:
        return self.value


def parse_hsa_id(text: str) -> HsaId:
    """Parse and return an HSA-ID, or raise :class:`InvalidHsaId` saying what is wrong."""
    if len(text) > MAX_LENGTH:
        raise InvalidHsaId(f"HSA-ID {text[:40]!r} is longer than {MAX_LENGTH} characters")
    match = _PATTERN.fullmatch(text)
    if match is None:
        raise InvalidHsaId(
            f"HSA-ID {text!r} does not have the form SE<10-digit organisation number>-<id>"
        )
    return HsaId(value=text, organisation_number=match["org"])

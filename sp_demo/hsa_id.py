"""The HSA-ID format, as Treserva checks it before registering one on an account.

``SE`` + the directory owner's 10-digit organisation number + ``-`` + one or more of
``[A-Za-z0-9]``, at most 31 characters in all, e.g. ``SE2120001355-E0001``. Mock Treserva does
not import the IdP's code: it is a separate system that only talks SAML to the IdP.
"""

from __future__ import annotations

import re

MAX_LENGTH = 31
_PATTERN = re.compile(r"SE[0-9]{10}-[A-Za-z0-9]+")


def is_valid_hsa_id(text: str) -> bool:
    """True if ``text`` (exactly, no surrounding blanks) has the form of an HSA-ID."""
    return len(text) <= MAX_LENGTH and _PATTERN.fullmatch(text) is not None

"""Levels of assurance: what an SP may ask for in ``RequestedAuthnContext`` and what it gets.

The IdP performs one level: a SITHS card with its PIN is level 3. It can say so in either
federation's words — Sambi's ``http://id.sambi.se/loa/loa3`` or the Swedish eID Framework's
``http://id.elegnamnden.se/loa/1.0/loa3`` — and publishes both as its assurance certification.
A request is compared within the ladder its URIs belong to (SAML Core 3.3.2.2.1); a URI of
neither ladder (``PasswordProtectedTransport``, say) is never met, and what cannot be met is
answered with ``NoAuthnContext``, never with a silent downgrade.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SAMBI_LADDER = tuple(f"http://id.sambi.se/loa/loa{level}" for level in range(1, 5))
EID_LADDER = tuple(f"http://id.elegnamnden.se/loa/1.0/loa{level}" for level in range(1, 5))
LADDERS = (SAMBI_LADDER, EID_LADDER)
# The level this IdP performs, as an index into every ladder (loa3).
PERFORMED_LEVEL = 2
ASSURANCE_CERTIFICATIONS = tuple(ladder[PERFORMED_LEVEL] for ladder in LADDERS)

COMPARISONS = ("exact", "minimum", "better", "maximum")


@dataclass(frozen=True)
class RequestedContext:
    """A ``RequestedAuthnContext`` as the SP sent it: class references in order, comparison."""

    class_refs: tuple[str, ...]
    comparison: str = "exact"


class AuthnContextNotMet(Exception):
    """Nothing the IdP can do meets the request (SAML status ``NoAuthnContext``)."""


def _place(uri: str) -> tuple[tuple[str, ...], int] | None:
    for ladder in LADDERS:
        if uri in ladder:
            return ladder, ladder.index(uri)
    return None


def _meets(level: int, comparison: str) -> bool:
    if comparison == "exact":
        return level == PERFORMED_LEVEL
    if comparison == "minimum":
        return level <= PERFORMED_LEVEL
    if comparison == "better":
        return level < PERFORMED_LEVEL
    # "maximum": as strong as possible without exceeding the requested level.
    return level >= PERFORMED_LEVEL


def choose_authn_context(requested: RequestedContext | None, default: str) -> str:
    """The AuthnContextClassRef to assert: ``default`` (the SP's profile) when nothing was
    requested, else the performed level in the ladder of the first requested URI it meets.

    Raises :class:`AuthnContextNotMet` when no requested URI is met, and :class:`ValueError`
    for a comparison SAML does not define.
    """
    if requested is None or not requested.class_refs:
        return default
    if requested.comparison not in COMPARISONS:
        raise ValueError(f"Comparison {requested.comparison[:20]!r} is not a SAML comparison")
    for uri in requested.class_refs:
        place = _place(uri)
        if place is not None and _meets(place[1], requested.comparison):
            return place[0][PERFORMED_LEVEL]
    raise AuthnContextNotMet(
        f"{requested.comparison} {', '.join(ref[:100] for ref in requested.class_refs[:5])}"
    )


def requested_context(class_refs: Sequence[str], comparison: str | None) -> RequestedContext:
    return RequestedContext(tuple(class_refs), comparison or "exact")

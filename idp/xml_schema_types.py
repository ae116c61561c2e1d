"""XML Schema datatypes read by their lexical rules, in one place for requests and metadata."""

from __future__ import annotations

# XML Schema Part 2, 3.2.2.1: the lexical space of xs:boolean is {true, false, 1, 0}, after
# whitespace collapse. "True", "yes" and "" are not booleans.
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


class NotABoolean(ValueError):
    """A value that is not in xs:boolean's lexical space."""


def xs_boolean(value: object, *, default: bool) -> bool:
    """``value`` (an XML attribute's text, or None when absent) as xs:boolean.

    Absent (None) gives ``default``; anything outside ``true``/``false``/``1``/``0`` raises
    :class:`NotABoolean` so that the caller decides, per field, what a broken value means.
    pysaml2 hands some attributes over as Python booleans; those are taken as they are.
    """
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text not in _BOOLEANS:
        raise NotABoolean(f"{text[:20]!r} is not an xs:boolean")
    return _BOOLEANS[text]

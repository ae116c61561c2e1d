"""The one rule for where an SP's Responses may be posted: what ``idp metadata validate``, the
remote aggregate loader and the running IdP all apply to an AssertionConsumerService location.

https with a host, always. Plain http only for a loopback host (``127.0.0.1``, ``localhost``,
``[::1]``) and only when the operator turned on ``IDP_ALLOW_HTTP_LOOPBACK_ACS`` for development:
a Response carries a bearer Assertion, and on any other network path anyone who reads it can
log in as the user.
"""

from __future__ import annotations

import urllib.parse

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
LOOPBACK_SETTING = "IDP_ALLOW_HTTP_LOOPBACK_ACS"


def acs_location_problem(location: str, *, allow_http_loopback: bool) -> str | None:
    """Why a Response must never be posted to ``location``, or None if it may be."""
    try:
        parts = urllib.parse.urlsplit(location)
        host = parts.hostname
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return f"ACS {location!r} is not a URL"
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not host:
        return f"ACS {location!r} is not an https URL"
    if scheme == "https":
        return None
    if host.lower() in LOOPBACK_HOSTS:
        if allow_http_loopback:
            return None
        return (
            f"ACS {location!r} is not an https URL (http on a loopback host is accepted only "
            f"with {LOOPBACK_SETTING}=true, for development)"
        )
    return f"ACS {location!r} is not an https URL"

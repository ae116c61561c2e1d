"""What every refusal by the IdP must look like, checked in one place.

A refused browser gets the IdP's own error page: an error status, the reason code, Swedish with
English alongside, nothing the SP could take for a login, no redirect onwards and no SSO session.
"""

from __future__ import annotations

import sqlite3

import httpx

from tests.conftest import IdpUnderTest
from tests.helpers.support import assert_no_success_response, reason_code

SSO_COOKIE = "__Host-idp-sso"


def audit_reasons(idp: IdpUnderTest) -> list[tuple[str, str, str]]:
    """Every audit event of the session's IdP so far: (event, outcome, reason), oldest first."""
    with sqlite3.connect(idp.database_file()) as connection:
        return connection.execute(
            "SELECT event, outcome, reason FROM audit_events ORDER BY id"
        ).fetchall()


def assert_refusal_page(response: httpx.Response, reason: str, status: int | None = None) -> None:
    """``response`` is the IdP's refusal page for ``reason``: with ``status`` exactly, or any
    error status when ``status`` is None."""
    if status is None:
        assert response.status_code >= 400, response.text[:500]
    else:
        assert response.status_code == status, response.text[:500]
    assert reason_code(response.text) == reason, response.text[:2000]
    assert 'lang="sv"' in response.text and 'lang="en"' in response.text
    assert_no_success_response(response.text)  # at most a failure status for the SP
    assert "location" not in response.headers
    assert SSO_COOKIE not in response.headers.get("set-cookie", "")


def assert_refused(
    idp: IdpUnderTest, response: httpx.Response, reason: str, status: int | None = None
) -> None:
    """The refusal page for ``reason`` (see :func:`assert_refusal_page`), and the IdP audited
    ``reason`` both in its database and as a structured (JSON) log line."""
    assert_refusal_page(response, reason, status)
    assert any(row[2] == reason for row in audit_reasons(idp)), audit_reasons(idp)[-5:]
    # The same event as a structured log line (JSON), without keys or assertions.
    assert f'"reason": "{reason}"' in idp.server.log()

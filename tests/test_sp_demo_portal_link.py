"""Mock Treserva's readiness report links to the service portal's readiness board when the
portal's address is configured (``SP_DEMO_PORTAL_URL``), and not otherwise."""

from __future__ import annotations

import datetime as dt

import pytest

from sp_demo.pages import templates
from sp_demo.readiness import REASONS, ReadinessReport


@pytest.mark.parametrize("portal_url", ["https://portal.example.test", ""])
def test_readiness_report_links_to_the_portal_board(portal_url: str) -> None:
    report = ReadinessReport(dt.date(2024, 3, 1), 0, (), idp_checked=False)
    html = templates.get_template("admin/readiness.html").render(
        report=report,
        reasons=REASONS,
        directory_error=None,
        portal_url=portal_url,
        display_name="Treserva (demo)",
        csrf=lambda: "token",
    )
    link = f'<a href="{portal_url}/beredskap">'
    assert (link in html) is bool(portal_url)
    assert ('id="portal-board"' in html) is bool(portal_url)

"""The cut-over from Windows login to SITHS login: from ``Settings.cutover_date`` (a Swedish
calendar date) only SITHS login is accepted.

The date is read from the settings on every check, never cached, so a process started with
another date (as the tests do to "move time forward") behaves accordingly.
"""

from __future__ import annotations

import datetime as dt

from sp_demo.config import TIMEZONE, Settings


def today() -> dt.date:
    """Today's date in Sweden."""
    return dt.datetime.now(TIMEZONE).date()


def windows_login_open(settings: Settings, on: dt.date | None = None) -> bool:
    """True while the Windows login is still accepted, i.e. before the cut-over date."""
    return (on or today()) < settings.cutover_date

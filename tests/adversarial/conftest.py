"""Hypothesis profiles of the adversarial suite and the figures printed at the end of a run.

``ci`` (the default) keeps the whole suite to a couple of minutes inside `make test`;
``HYPOTHESIS_PROFILE=fuzz`` (``make fuzz``) tries many times more examples per test.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from tests.adversarial.figures import FIGURES, PROFILE

# Examples talk to real servers over sockets: no per-example deadline (a slow example on a
# busy 2-core machine is not a bug; a hang is caught by the HTTP client's timeouts instead).
_COMMON = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
    "print_blob": True,
}
settings.register_profile("ci", max_examples=20, **_COMMON)
settings.register_profile("fuzz", max_examples=200, **_COMMON)
settings.load_profile(PROFILE)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES.examples:
        for line in FIGURES.summary():
            terminalreporter.write_line(line)

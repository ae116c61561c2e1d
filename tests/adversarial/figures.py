"""What the adversarial suite tried, for the closing line of the run (see ``conftest.py``).

Every generated input counts once as an example, in the area that tried it; every answer that
was a server error (a 5xx status, or a connection dropped without an answer) counts as one.
The tests fail on a server error anyway; the count is what ``make fuzz`` reports.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

# Hypothesis profile of this run: `ci` (the default, bounded for `make test`) or `fuzz`.
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
# How many times more examples the `fuzz` profile tries than `ci`.
FUZZ_FACTOR = 10


def examples(ci: int) -> int:
    """A test's example budget: ``ci`` in `make test`, many more under ``make fuzz``."""
    return ci * FUZZ_FACTOR if PROFILE == "fuzz" else ci


@dataclass
class Figures:
    examples: Counter[str] = field(default_factory=Counter)
    server_errors: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)

    def tried(self, area: str, count: int = 1) -> None:
        self.examples[area] += count

    def server_error(self, area: str, detail: str) -> None:
        self.server_errors[area] += 1
        if len(self.first_errors) < 10:
            self.first_errors.append(f"{area}: {detail}")

    def summary(self) -> list[str]:
        areas = ", ".join(f"{area} {count}" for area, count in sorted(self.examples.items()))
        lines = [
            f"adversarial ({PROFILE} profile): examples tried: {sum(self.examples.values())}, "
            f"server errors: {sum(self.server_errors.values())}",
            f"  by area: {areas}",
        ]
        lines.extend(f"  server error: {line}" for line in self.first_errors)
        return lines


FIGURES = Figures()

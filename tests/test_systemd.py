"""The systemd unit for the embedded node (``deploy/systemd/atkomsttjansten.service``).

systemd's own tools judge it: ``systemd-analyze verify`` (every key known, every value parsed,
the program executable) and ``systemd-analyze security --offline`` (the sandbox's exposure
score). The unit names the installed ``/opt/atkomsttjansten/.venv/bin/idp``, which ``verify``
needs to exist, so the checked copy names this checkout's ``idp`` instead; nothing else changes.
Running the unit needs systemd as PID 1, which the test machine does not have.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from idp.config import Settings
from tests.helpers.support import REPO_ROOT, VENV_BIN

UNIT = REPO_ROOT / "deploy" / "systemd" / "atkomsttjansten.service"
INSTALLED_IDP = "/opt/atkomsttjansten/.venv/bin/idp"
# systemd's scale: 0 (locked down) to 10 (exposed); 2.0 and under is what it calls "OK".
MAX_EXPOSURE = 2.0


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is not installed (Debian package: systemd)")
    return found


def _checkable_copy(tmp_path: Path) -> Path:
    text = UNIT.read_text("utf-8")
    assert text.count(INSTALLED_IDP) == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED_IDP, str(VENV_BIN / "idp")), "utf-8")
    return copy


def _directives() -> dict[str, list[str]]:
    values: dict[str, list[str]] = collections.defaultdict(list)
    for line in UNIT.read_text("utf-8").splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values[key].append(value)
    return values


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    checked = subprocess.run(
        [_systemd_analyze(), "verify", str(_checkable_copy(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    # verify exits 0 after mere warnings ("Unknown key … ignoring"): none are allowed either.
    assert checked.returncode == 0, checked.stderr
    assert UNIT.name not in checked.stderr, checked.stderr


def test_the_sandbox_is_rated_ok_by_systemd(tmp_path: Path) -> None:
    rated = subprocess.run(
        [
            _systemd_analyze(),
            "security",
            "--offline=yes",
            f"--threshold={int(MAX_EXPOSURE * 10)}",
            str(_checkable_copy(tmp_path)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    level = re.search(r"Overall exposure level for \S+: ([\d.]+)", rated.stdout)
    assert level is not None, rated.stdout[-2000:] + rated.stderr
    assert rated.returncode == 0 and float(level.group(1)) <= MAX_EXPOSURE, level.group(0)


def test_the_unit_keeps_the_node_running_in_a_sandbox_with_var_as_its_state() -> None:
    unit = _directives()
    assert unit["Restart"] == ["always"] and unit["StartLimitIntervalSec"] == ["0"]
    assert unit["ExecStart"] == [f"{INSTALLED_IDP} serve --workers auto"]
    assert unit["DynamicUser"] == ["yes"] and unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"] and unit["PrivateTmp"] == ["yes"]
    # var/ is the state directory: the one place the service may write, and its own.
    assert unit["StateDirectory"] == ["atkomsttjansten"]
    assert "IDP_VAR_DIR=/var/lib/atkomsttjansten" in unit["Environment"]
    assert unit["WorkingDirectory"] == ["/var/lib/atkomsttjansten"]
    # Every setting the unit gives is one the IdP reads.
    for assignment in unit["Environment"]:
        name = assignment.partition("=")[0]
        assert name.startswith("IDP_") and name[4:].lower() in Settings.model_fields, name
    # The command line is one `idp serve` accepts.
    help_text = subprocess.run(
        [str(VENV_BIN / "idp"), "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--workers" in help_text

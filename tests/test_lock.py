"""requirements.lock pins what pyproject.toml asks for (tools/lock_check.py), and the check
finds each way the two can drift apart: a requirement not pinned, a pin outside its specifier,
a pin without a hash, a pin nothing needs, and what an extra pulls in."""

from __future__ import annotations

from packaging.requirements import Requirement
from packaging.version import Version

from tools.lock_check import (
    LOCK_FILE,
    PYPROJECT,
    RUNTIME_LOCK_FILE,
    Pin,
    declared_requirements,
    disagreements,
    read_pins,
    runtime_lock_disagreements,
)

HASH = "sha256:" + "ab" * 32

TOY_LOCK = f"""#
# toy lock
#
alpha==1.4.2 \\
    --hash={HASH} \\
    --hash=sha256:{"cd" * 32}
    # via toy (pyproject.toml)
beta==2.0 \\
    --hash={HASH}
    # via alpha
"""

# What the toy packages declare they need (as installed metadata would say).
TOY_METADATA = {
    "alpha": [Requirement("beta>=2"), Requirement('gamma>=1; extra == "fast"')],
    "beta": [],
    "gamma": [],
}


def check(declared: list[str], pins: dict) -> list[str]:
    return disagreements(
        [Requirement(text) for text in declared],
        pins,
        requirements_of=lambda name: TOY_METADATA[name],
        version_of=lambda name: pins[name].version,
    )


def test_the_lock_agrees_with_pyproject() -> None:
    problems = disagreements(
        declared_requirements(PYPROJECT.read_text("utf-8")),
        read_pins(LOCK_FILE.read_text("utf-8")),
    )
    assert problems == [], "run `make lock` (and `make venv`):\n" + "\n".join(problems)


def test_the_images_runtime_lock_agrees_with_pyproject_and_the_full_lock() -> None:
    full = read_pins(LOCK_FILE.read_text("utf-8"))
    runtime = read_pins(RUNTIME_LOCK_FILE.read_text("utf-8"))
    problems = runtime_lock_disagreements(PYPROJECT.read_text("utf-8"), full, runtime)
    assert problems == [], "run `make lock`:\n" + "\n".join(problems)
    assert "pytest" not in runtime


def test_a_runtime_pin_other_than_the_full_locks_is_named() -> None:
    full = read_pins(LOCK_FILE.read_text("utf-8"))
    runtime = read_pins(RUNTIME_LOCK_FILE.read_text("utf-8"))
    runtime["fastapi"] = Pin(Version("0.1"), runtime["fastapi"].hashes)
    problems = runtime_lock_disagreements(PYPROJECT.read_text("utf-8"), full, runtime)
    assert "fastapi==0.1 in the runtime lock differs from the full lock's pin" in problems


def test_the_lock_pins_the_test_extra_and_the_upper_bounds_hold() -> None:
    pins = read_pins(LOCK_FILE.read_text("utf-8"))
    assert {"pytest", "packaging", "fastapi", "psycopg-binary"} <= pins.keys()
    bounded = {
        requirement.name: requirement.specifier
        for requirement in declared_requirements(PYPROJECT.read_text("utf-8"))
    }
    for name in ("starlette", "authlib", "uvicorn"):
        assert any(spec.operator == "<" for spec in bounded[name]), name


def test_reading_a_lock_keeps_each_pins_hashes() -> None:
    pins = read_pins(TOY_LOCK)
    assert pins == {
        "alpha": Pin(Version("1.4.2"), (HASH, f"sha256:{'cd' * 32}")),
        "beta": Pin(Version("2.0"), (HASH,)),
    }


def test_a_lock_that_agrees_has_no_disagreements() -> None:
    assert check(["alpha>=1.4,<1.5"], read_pins(TOY_LOCK)) == []


def test_a_pin_outside_the_specifier_is_named() -> None:
    assert check(["alpha>=1.5"], read_pins(TOY_LOCK)) == [
        "alpha==1.4.2 does not satisfy alpha>=1.5 (pyproject.toml)"
    ]


def test_a_requirement_not_pinned_is_named() -> None:
    pins = read_pins(TOY_LOCK)
    assert check(["alpha", "delta>=3"], pins) == [
        "delta>=3 (needed by pyproject.toml) is not pinned"
    ]


def test_a_dependency_of_a_dependency_counts_too() -> None:
    pins = read_pins(TOY_LOCK)
    del pins["beta"]
    assert check(["alpha"], pins) == ["beta>=2 (needed by alpha) is not pinned"]


def test_an_extra_pulls_in_what_it_needs() -> None:
    assert check(["alpha[fast]"], read_pins(TOY_LOCK)) == [
        'gamma>=1; extra == "fast" (needed by alpha) is not pinned'
    ]


def test_a_pin_nothing_needs_is_named() -> None:
    assert check(["beta"], read_pins(TOY_LOCK)) == [
        "alpha==1.4.2 is pinned but nothing in pyproject.toml needs it"
    ]


def test_a_pin_without_a_hash_is_named() -> None:
    pins = read_pins(TOY_LOCK.replace(f"beta==2.0 \\\n    --hash={HASH}", "beta==2.0"))
    assert check(["alpha"], pins) == ["beta has no --hash"]


def test_a_venv_not_installed_from_the_lock_is_named() -> None:
    pins = read_pins(TOY_LOCK)
    problems = disagreements(
        [Requirement("alpha")],
        pins,
        requirements_of=lambda name: TOY_METADATA[name],
        version_of=lambda name: Version("1.3"),
    )
    assert problems == [
        "alpha is installed as 1.3, not the pinned 1.4.2: run `make venv` (the check reads "
        "installed metadata)",
        "beta==2.0 is pinned but nothing in pyproject.toml needs it",
    ]

"""Whether requirements.lock pins exactly what pyproject.toml asks for (``tests/test_lock.py``).

The lock agrees with pyproject when every requirement reachable from pyproject's dependencies
and its ``test`` extra (through each package's own requirements, markers evaluated here) is
pinned with ``==`` to a version its specifier allows, every pin carries at least one hash, and
nothing is pinned that none of them reaches. A package's own requirements are read from its
installed metadata, so the check is made in a venv installed from the lock (``make venv``).

``python -m tools.lock_check`` prints the disagreements and exits 1 if there are any.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCK_FILE = REPO_ROOT / "requirements.lock"
# The runtime dependencies alone (docker/Dockerfile), at the versions of LOCK_FILE.
RUNTIME_LOCK_FILE = REPO_ROOT / "docker" / "requirements.lock"
PYPROJECT = REPO_ROOT / "pyproject.toml"
# The extras `make` installs beside the runtime dependencies.
LOCKED_EXTRAS = ("test",)

# A pin starts a line: ``name==version``, then `` \`` and its ``--hash=`` lines.
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s\\;]+)")
_HASH = re.compile(r"--hash=(?P<hash>sha256:[0-9a-f]{64})")


@dataclass(frozen=True)
class Pin:
    """One package of the lock: the exact version and the hashes pip will accept for it."""

    version: Version
    hashes: tuple[str, ...]


def read_pins(lock_text: str) -> dict[NormalizedName, Pin]:
    """The lock's pins by canonical name (hash lines belong to the pin above them)."""
    pins: dict[NormalizedName, Pin] = {}
    current: NormalizedName | None = None
    for line in lock_text.splitlines():
        pin = _PIN.match(line)
        if pin:
            current = canonicalize_name(pin["name"])
            pins[current] = Pin(Version(pin["version"]), ())
        elif current is not None and (digest := _HASH.search(line)):
            pins[current] = Pin(pins[current].version, (*pins[current].hashes, digest["hash"]))
    return pins


def declared_requirements(
    pyproject_text: str, extras: Iterable[str] = LOCKED_EXTRAS
) -> list[Requirement]:
    """pyproject's runtime dependencies followed by those of ``extras``."""
    project = tomllib.loads(pyproject_text)["project"]
    optional = project.get("optional-dependencies", {})
    texts = [*project.get("dependencies", []), *(t for e in extras for t in optional.get(e, []))]
    return [Requirement(text) for text in texts]


def installed_requirements(name: str) -> list[Requirement]:
    """What the installed distribution ``name`` declares it needs (all extras, with markers)."""
    return [Requirement(text) for text in importlib.metadata.requires(name) or []]


def installed_version(name: str) -> Version | None:
    try:
        return Version(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        return None


def disagreements(
    declared: Iterable[Requirement],
    pins: dict[NormalizedName, Pin],
    requirements_of: Callable[[str], list[Requirement]] = installed_requirements,
    version_of: Callable[[str], Version | None] = installed_version,
) -> list[str]:
    """Every way the lock fails to pin ``declared`` and what they need; empty when it agrees."""
    problems: list[str] = []
    reached: set[NormalizedName] = set()
    seen: set[tuple[NormalizedName, frozenset[str]]] = set()
    pending = [(requirement, "pyproject.toml") for requirement in declared]
    while pending:
        requirement, wanted_by = pending.pop()
        name = canonicalize_name(requirement.name)
        pin = pins.get(name)
        if pin is None:
            problems.append(f"{requirement} (needed by {wanted_by}) is not pinned")
            continue
        reached.add(name)
        if not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{name}=={pin.version} does not satisfy {requirement} ({wanted_by})")
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        if version_of(name) != pin.version:
            problems.append(
                f"{name} is installed as {version_of(name)}, not the pinned {pin.version}: "
                "run `make venv` (the check reads installed metadata)"
            )
            continue
        for needed in requirements_of(name):
            if _applies(needed, requirement.extras):
                pending.append((needed, name))
    problems += [f"{name} has no --hash" for name, pin in sorted(pins.items()) if not pin.hashes]
    problems += [
        f"{name}=={pins[name].version} is pinned but nothing in pyproject.toml needs it"
        for name in sorted(pins.keys() - reached)
    ]
    return problems


def _applies(requirement: Requirement, extras: Iterable[str]) -> bool:
    """Whether ``requirement`` holds here for a package installed with ``extras``."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in ("", *extras))


def runtime_lock_disagreements(
    pyproject_text: str, full: dict[NormalizedName, Pin], runtime: dict[NormalizedName, Pin]
) -> list[str]:
    """The runtime lock against pyproject's runtime dependencies, and each of its pins against
    the full lock's (same version, same hashes)."""
    problems = disagreements(declared_requirements(pyproject_text, extras=()), runtime)
    problems += [
        f"{name}=={pin.version} in the runtime lock differs from the full lock's pin"
        for name, pin in sorted(runtime.items())
        if full.get(name) != pin
    ]
    return problems


def main() -> int:
    pyproject_text = PYPROJECT.read_text("utf-8")
    full = read_pins(LOCK_FILE.read_text("utf-8"))
    runtime = read_pins(RUNTIME_LOCK_FILE.read_text("utf-8"))
    problems = disagreements(declared_requirements(pyproject_text), full)
    problems += runtime_lock_disagreements(pyproject_text, full, runtime)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

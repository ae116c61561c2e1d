"""The container files (``docker/``), tested as far as a machine without a Docker engine allows.

There is no Docker engine here (only the client), so no image is built and no container runs.
What *is* tested, with real programs:

- **compose.yml is valid**: Debian's ``docker-compose`` (1.29) runs ``config`` on it, which
  needs no engine, and its resolved output is what the other compose checks read.
- **compose.yml describes the topology ``tests/test_multinode.py`` runs**: nginx mounts the same
  template file (``siths_testkit.local_cluster.NGINX_TEMPLATE``) and its environment fills every
  placeholder; two IdP nodes run ``idp serve --behind-proxy``; PostgreSQL; mock Treserva. Every
  ``IDP_*``/``SP_DEMO_*`` variable is a field of the settings class that reads it (pydantic-settings
  ignores unknown names silently) and reaches that field with the value given; nginx's
  address is in ``IDP_TRUSTED_PROXIES``; the database URL names the postgres service and its
  credentials. Every ``idp``/``sp-demo`` command in the file, those inside shell scripts
  included, answers ``--help`` through the venv's entry points (running the image's copy of
  the code) and has the options used; the shell scripts pass ``sh -n``.
- **The image's file set is enough to run a node**: the Dockerfile's ``COPY`` lines are
  replayed (stages, ``WORKDIR``, ``--from``, ``Dockerfile.dockerignore``) into a temporary
  ``/app``, and the Dockerfile's ``CMD`` starts a node from that copy (``PYTHONPATH`` puts it
  before the editable install; the test asserts that the copy is what is imported) with the
  Dockerfile's ``ENV`` (loopback instead of ``0.0.0.0``, a free port, a temporary
  ``IDP_VAR_DIR``/``WORKDIR``) on SQLite and the session's test PKI. ``/healthz`` and ``/readyz``
  answer 200, and the Dockerfile's ``HEALTHCHECK`` command exits 0, then non-zero once the node
  has stopped.
- **Dockerfile rules**: a non-root final ``USER``, a ``HEALTHCHECK``, a slim base shared by both
  stages, ``EXPOSE`` equal to ``IDP_PORT``, no key, ``var/`` or bytecode in the copied files.

Not covered: building the image (``RUN`` steps: apt, ``pip install`` into ``/opt/venv``; the venv
here stands in for ``/opt/venv``), the base images and their users and permissions, the nginx
image's envsubst step, container networking and DNS, volumes, ``depends_on`` ordering and the
healthcheck timing, and ``idp-init``'s shell script as a whole. Those need a Docker engine:
``docker compose -f docker/compose.yml up --build``.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import click
import httpx
import pytest
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

from idp.cli import main as idp_cli
from idp.config import Settings
from idp.oidc.settings import OidcSettings
from siths_testkit.local_cluster import NGINX_TEMPLATE
from siths_testkit.pki import TestPki
from sp_demo.cli import main as sp_demo_cli
from sp_demo.config import Settings as SpDemoSettings
from tests.helpers.support import REPO_ROOT, VENV_BIN, free_port, start_server

DOCKER_DIR = REPO_ROOT / "docker"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
# BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile instead of the context's own.
DOCKERIGNORE = DOCKER_DIR / "Dockerfile.dockerignore"
COMPOSE_FILE = DOCKER_DIR / "compose.yml"
BUILD_CONTEXT = REPO_ROOT
# Where the image keeps the code, and what stands in here for what the image builds itself.
APP_DIR = PurePosixPath("/app")
IMAGE_VENV = PurePosixPath("/opt/venv")
LOCAL_VENV = VENV_BIN.parent
NODE_COMMAND = ["idp", "serve", "--behind-proxy"]
CLIS: dict[str, click.Command] = {"idp": idp_cli, "sp-demo": sp_demo_cli}
# Files that must never be in an image: private keys, key stores, the SQLite databases.
SECRET_FILE = re.compile(r"(\.key|[.-]key\.pem|\.p12|\.pfx|\.sqlite3)$")


# --- docker-compose --------------------------------------------------------------------------


def _load_yaml(text: str, docker_compose: str) -> dict[str, Any]:
    """Parse YAML with PyYAML: in this process if installed, else in docker-compose's own Python.

    Debian's docker-compose is a Python program that needs PyYAML, so its interpreter (the
    script's ``#!`` line) always has it; the venv need not.
    """
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        return yaml.safe_load(text)
    shebang = Path(docker_compose).read_text(errors="replace").splitlines()[0]
    interpreter = shebang.removeprefix("#!").split()
    assert "python" in " ".join(interpreter), f"cannot find a YAML parser: {shebang}"
    result = subprocess.run(
        [
            *interpreter,
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(result.stdout)


def docker_compose_config(compose_file: Path, tmp_dir: Path) -> subprocess.CompletedProcess:
    """``docker-compose -f FILE config`` with only the file's own defaults for ``${VARIABLES}``."""
    docker_compose = shutil.which("docker-compose")
    if docker_compose is None:
        pytest.fail("docker-compose is not installed: `make system-packages` installs it")
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", compose_file.read_text()))
    env = {k: v for k, v in os.environ.items() if k not in used and not k.startswith("COMPOSE_")}
    empty_env_file = tmp_dir / "empty.env"
    empty_env_file.write_text("")
    return subprocess.run(
        [docker_compose, "--env-file", str(empty_env_file), "-f", str(compose_file), "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """compose.yml as docker-compose resolves it (anchors merged, defaults filled in)."""
    result = docker_compose_config(COMPOSE_FILE, tmp_path_factory.mktemp("compose"))
    assert result.returncode == 0, f"docker-compose config: {result.stderr}"
    docker_compose = shutil.which("docker-compose")
    assert docker_compose is not None
    return _load_yaml(result.stdout, docker_compose)


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _the_service(
    compose: dict[str, Any], what: str, matches: Callable[[dict[str, Any]], bool]
) -> tuple[str, dict[str, Any]]:
    found = [(name, service) for name, service in _services(compose).items() if matches(service)]
    assert len(found) == 1, f"expected one {what} service, found {[name for name, _ in found]}"
    return found[0]


def _node_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in _services(compose).items()
        if service.get("command") == NODE_COMMAND
    }


def _nginx(compose: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return _the_service(compose, "nginx", lambda s: s.get("image", "").startswith("nginx:"))


def _postgres(compose: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return _the_service(compose, "postgres", lambda s: s.get("image", "").startswith("postgres:"))


def _our_image(compose: dict[str, Any]) -> str:
    """The image tag the services built from docker/Dockerfile get."""
    built = {
        service["image"]
        for service in _services(compose).values()
        if "build" in service
        and Path(service["build"]["context"]).resolve() == BUILD_CONTEXT
        and (BUILD_CONTEXT / service["build"]["dockerfile"]).resolve() == DOCKERFILE
    }
    assert len(built) == 1, f"services built from docker/Dockerfile should share one tag: {built}"
    return built.pop()


def _services_on_our_image(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    image = _our_image(compose)
    return {name: s for name, s in _services(compose).items() if s.get("image") == image}


# --- commands inside compose.yml -------------------------------------------------------------


@dataclass
class ShellCommand:
    """One simple command of ours (``idp …``/``sp-demo …``) and the variables set on its line."""

    words: list[str]
    assignments: dict[str, str] = field(default_factory=dict)


_SHELL_SEPARATOR = re.compile(r"&&|\|\||[;|\n`()]")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)")


def commands_in_script(script: str) -> list[ShellCommand]:
    """Our commands in a ``sh -c`` script: split at ``&&``, ``;``, newlines, ``$(…)``, pipes.

    Enough for the scripts in compose.yml (no shell functions or aliases): a simple command
    may start with ``exec`` and ``NAME=value`` assignments; quotes around words are dropped.
    """
    text = script.replace("$$", "$").replace("\\\n", " ")
    commands = []
    for segment in _SHELL_SEPARATOR.split(text):
        words = segment.split()
        assignments: dict[str, str] = {}
        while words and (words[0] == "exec" or _ASSIGNMENT.fullmatch(words[0])):
            if match := _ASSIGNMENT.fullmatch(words.pop(0)):
                assignments[match.group(1)] = match.group(2)
        if words and words[0] in CLIS:
            commands.append(ShellCommand([w.strip("'\"") for w in words], assignments))
    return commands


def commands_in_service(service: dict[str, Any]) -> list[ShellCommand]:
    command = service.get("command")
    if command is None:
        return []
    words = shlex.split(command) if isinstance(command, str) else list(command)
    if Path(words[0]).name in ("sh", "bash") and len(words) >= 3 and "c" in words[1]:
        return commands_in_script(words[2])
    return [ShellCommand(words)] if words[0] in CLIS else []


def shell_scripts(service: dict[str, Any]) -> list[str]:
    """A service's ``sh -c`` script and those nested in it (``su idp -s /bin/sh -c '…'``)."""
    command = service.get("command")
    words = shlex.split(command) if isinstance(command, str) else list(command or [])
    if not (len(words) >= 3 and Path(words[0]).name in ("sh", "bash") and "c" in words[1]):
        return []
    scripts = [words[2].replace("$$", "$")]  # compose's escape for a literal $
    for script in scripts:  # grows while nested scripts are found
        tokens = shlex.split(script)
        scripts += [tokens[i + 1] for i, token in enumerate(tokens[:-1]) if token == "-c"]
    return scripts


def subcommand_path(words: list[str]) -> list[str]:
    """``["idp", "people", "import", "x.csv"]`` → ``["idp", "people", "import"]`` (click's tree)."""
    command = CLIS[words[0]]
    path = [words[0]]
    for word in words[1:]:
        # get_command, not .commands: `idp pki …` comes from an entry point, loaded on demand.
        found = (
            command.get_command(click.Context(command), word)
            if isinstance(command, click.Group)
            else None
        )
        if found is None:
            break
        command = found
        path.append(word)
    assert not isinstance(command, click.Group), f"{words}: {' '.join(path)} needs a subcommand"
    return path


# --- settings from an environment ------------------------------------------------------------

SETTINGS_CLASSES: dict[str, type[BaseSettings]] = {
    "IDP_OIDC_": OidcSettings,
    "IDP_": Settings,
    "SP_DEMO_": SpDemoSettings,
}


def settings_class_of(name: str) -> type[BaseSettings] | None:
    """The settings class that reads variable ``name`` (longest prefix whose field it is)."""
    for prefix, settings_class in SETTINGS_CLASSES.items():  # longest prefix first
        if name.startswith(prefix) and name[len(prefix) :].lower() in settings_class.model_fields:
            return settings_class
    return None


def _reached_field(value: object, text: str) -> bool:
    """Whether ``value`` (a parsed settings field) is what the variable's ``text`` says."""
    if isinstance(value, bool):
        return value is (text.strip().lower() in ("1", "true", "yes", "on"))
    if isinstance(value, list):
        return value == json.loads(text)
    if isinstance(value, Path):
        return value == Path(text)
    if isinstance(value, int | float):
        return value == float(text)
    return str(value) == text


def settings_from_environment(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> dict[type[BaseSettings], BaseSettings]:
    """Build each settings class from exactly ``environment`` (nothing inherited).

    The settings read no files when built, so paths that exist only in a container
    (``/srv/idp/...``) are taken as they are.
    """
    for name in list(os.environ):
        if any(name.startswith(prefix) for prefix in SETTINGS_CLASSES):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    idp_settings = Settings()
    return {
        Settings: idp_settings,
        OidcSettings: OidcSettings.for_idp(idp_settings),
        SpDemoSettings: SpDemoSettings(),
    }


def assert_every_variable_is_read(
    environment: dict[str, str], where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every IDP_*/SP_DEMO_* name is a settings field and reaches it with the value given."""
    ours = {k: v for k, v in environment.items() if k.startswith(("IDP_", "SP_DEMO_"))}
    unknown = sorted(name for name in ours if settings_class_of(name) is None)
    assert not unknown, f"{where}: no settings field reads {unknown} (silently ignored)"
    built = settings_from_environment(ours, monkeypatch)
    for name, text in ours.items():
        settings_class = settings_class_of(name)
        assert settings_class is not None
        prefix = next(p for p, c in SETTINGS_CLASSES.items() if c is settings_class)
        value = getattr(built[settings_class], name[len(prefix) :].lower())
        assert _reached_field(value, text), f"{where}: {name}={text!r} became {value!r}"


# --- the Dockerfile, replayed without Docker -------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def read_instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions, continuation lines joined, comments dropped (no heredocs)."""
    instructions = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            keyword, _, arguments = full.partition(" ")
            instructions.append(Instruction(keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return instructions


def _exec_form(arguments: str) -> list[str]:
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def _substitute(text: str, variables: dict[str, str]) -> str:
    """``$NAME``, ``${NAME}`` and ``${NAME:-default}``; unknown names are left as they are."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name in variables:
            return variables[name]
        return match.group(2) if match.group(2) is not None else match.group(0)

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)", replace, text)


def _translate_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regular expression."""
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i:]:
            end = pattern.index("]", i)
            regex, i = regex + "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]", end + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex)


class ContextIgnore:
    """What a .dockerignore leaves out of the build context.

    As Docker does: a pattern that matches a directory leaves out everything under it, the
    last matching pattern wins and ``!pattern`` takes a path back.
    """

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[re.Pattern[str], bool]] = []
        for line in text.splitlines():
            pattern = line.strip()
            if not pattern or pattern.startswith("#"):
                continue
            negated = pattern.startswith("!")
            pattern = os.path.normpath(pattern.removeprefix("!").strip()).lstrip("/")
            self.rules.append((_translate_pattern(pattern), negated))

    def excludes(self, relative: PurePosixPath) -> bool:
        candidates = [relative.as_posix()] + [
            parent.as_posix() for parent in relative.parents if parent != PurePosixPath(".")
        ]
        excluded = False
        for regex, negated in self.rules:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                excluded = not negated
        return excluded


@dataclass
class Stage:
    """One build stage: where each file COPY'd into it came from, and its final settings."""

    name: str | None
    base_image: str
    workdir: PurePosixPath = field(default_factory=lambda: PurePosixPath("/"))
    files: dict[PurePosixPath, Path] = field(default_factory=dict)
    # Image paths COPY'd from another stage where a RUN step made them: not reproducible here.
    not_reproduced: list[PurePosixPath] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    exposed: list[str] = field(default_factory=list)
    healthcheck: list[str] | None = None
    cmd: list[str] | None = None


@dataclass
class ImageModel:
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def _copy_from_context(
    stage: Stage, sources: list[str], destination: PurePosixPath, dest_is_dir: bool
) -> None:
    ignore = ContextIgnore(DOCKERIGNORE.read_text())
    for source in sources:
        matches = sorted(BUILD_CONTEXT.glob(source)) if re.search(r"[*?\[]", source) else []
        matches = matches or [BUILD_CONTEXT / source]
        for match in matches:
            relative = PurePosixPath(match.relative_to(BUILD_CONTEXT).as_posix())
            assert match.exists() and not ignore.excludes(relative), (
                f"COPY {source}: not in the build context (missing or in .dockerignore)"
            )
            if match.is_dir():
                for file in sorted(match.rglob("*")):
                    inside = PurePosixPath(file.relative_to(BUILD_CONTEXT).as_posix())
                    if file.is_file() and not ignore.excludes(inside):
                        stage.files[destination / file.relative_to(match).as_posix()] = file
            else:
                stage.files[destination / match.name if dest_is_dir else destination] = match


def _copy_from_stage(
    stage: Stage, source_stage: Stage, sources: list[str], destination: PurePosixPath
) -> None:
    for source in sources:
        root = PurePosixPath("/") / source  # --from sources are relative to the stage's root
        copied = {p: f for p, f in source_stage.files.items() if p == root or root in p.parents}
        if not copied:
            stage.not_reproduced.append(destination)
        for path, file in copied.items():
            stage.files[destination / path.relative_to(root)] = file


def replay_dockerfile(dockerfile: Path) -> ImageModel:
    """What each stage's COPY lines put where, and the final ENV, USER, CMD… (no RUN)."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in read_instructions(dockerfile.read_text()):
        keyword, arguments = instruction.keyword, instruction.arguments
        if keyword == "ARG":
            name, _, default = arguments.partition("=")
            global_args.setdefault(name.strip(), default.strip())
            continue
        if keyword == "FROM":
            words = [w for w in arguments.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            base = _substitute(words[0], global_args)
            parent = next((s for s in stages if s.name == base), None)
            if parent is None:
                stages.append(Stage(name, base))
            else:  # FROM an earlier stage: everything it has, under a new name
                stages.append(replace(copy.deepcopy(parent), name=name))
            continue
        assert stages, f"{keyword} before FROM"
        stage = stages[-1]
        if keyword == "WORKDIR":
            stage.workdir = stage.workdir / _substitute(arguments, stage.env)
        elif keyword in ("COPY", "ADD"):
            words = _exec_form(arguments)
            flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
            paths = [w for w in words if not w.startswith("--")]
            sources, destination = paths[:-1], paths[-1]
            target = stage.workdir / destination
            dest_is_dir = destination.endswith("/") or len(sources) > 1
            if "from" in flags:
                source_stage = next(s for s in stages if s.name == flags["from"])
                _copy_from_stage(stage, source_stage, sources, target)
            else:
                _copy_from_context(stage, sources, target, dest_is_dir)
        elif keyword == "ENV":
            words = shlex.split(arguments)
            pairs = (
                [w.partition("=")[::2] for w in words]
                if "=" in words[0]
                else [(words[0], " ".join(words[1:]))]
            )
            for name, value in pairs:
                stage.env[name] = _substitute(value, stage.env)
        elif keyword == "USER":
            stage.user = arguments
        elif keyword == "EXPOSE":
            stage.exposed += [port.split("/")[0] for port in arguments.split()]
        elif keyword == "HEALTHCHECK":
            _options, _, command = arguments.partition("CMD ")
            stage.healthcheck = _exec_form(command.strip()) if command else None
        elif keyword == "CMD":
            stage.cmd = _exec_form(arguments)
    return ImageModel(stages)


@pytest.fixture(scope="module")
def image() -> ImageModel:
    return replay_dockerfile(DOCKERFILE)


@pytest.fixture(scope="module")
def app_copy(image: ImageModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exactly the files the image has under /app, copied into a temporary directory."""
    directory = tmp_path_factory.mktemp("image") / "app"
    for image_path, source in image.final.files.items():
        if APP_DIR in image_path.parents:
            target = directory / image_path.relative_to(APP_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return directory


# --- compose: valid, and the tested topology -------------------------------------------------


def test_docker_compose_accepts_the_compose_file(compose: dict[str, Any], tmp_path: Path) -> None:
    assert set(_services(compose)) >= {"postgres", "nginx", "treserva"}
    # The same check fails on a broken copy: docker-compose really validates.
    broken = tmp_path / "compose.yml"
    text, replaced = re.subn(
        r"^  nginx:\n", "  nginx:\n    bogus: 1\n", COMPOSE_FILE.read_text(), flags=re.M
    )
    assert replaced == 1
    broken.write_text(text)
    result = docker_compose_config(broken, tmp_path)
    assert result.returncode != 0 and "bogus" in result.stderr, result.stderr


def test_nginx_runs_the_template_the_multinode_tests_run(compose: dict[str, Any]) -> None:
    name, nginx = _nginx(compose)
    templates = [
        volume.split(":")
        for volume in nginx["volumes"]
        if volume.split(":")[1].startswith("/etc/nginx/templates/")
    ]
    assert [Path(source).resolve() for source, *_ in templates] == [NGINX_TEMPLATE.resolve()]
    assert templates[0][1].endswith(".template"), "the nginx image renders only *.template"
    # The nginx image's envsubst renders an unset ${NAME} as nothing: every one must be set.
    placeholders = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", NGINX_TEMPLATE.read_text()))
    environment: dict[str, str] = nginx["environment"]
    assert placeholders <= set(environment), f"{name} lacks {placeholders - set(environment)}"
    only = re.compile(environment.get("NGINX_ENVSUBST_FILTER", ""))
    assert all(only.search(placeholder) for placeholder in placeholders)
    # The upstreams are the two IdP nodes, on the port each listens on.
    nodes = _node_services(compose)
    upstreams = {environment[p] for p in placeholders if p.startswith("IDP_NODE_")}
    assert upstreams == {f"{n}:{s['environment']['IDP_PORT']}" for n, s in nodes.items()}


def test_two_idp_nodes_run_behind_the_proxy_on_the_image(compose: dict[str, Any]) -> None:
    nodes = _node_services(compose)
    assert len(nodes) == 2, f"IdP node services: {sorted(nodes)}"
    assert {node["image"] for node in nodes.values()} == {_our_image(compose)}
    assert len({node["environment"].get("IDP_NODE_NAME") for node in nodes.values()}) == 2
    for node in nodes.values():
        assert node["environment"]["IDP_BEHIND_PROXY"] == "true"
    _postgres(compose)
    _the_service(
        compose,
        "mock Treserva",
        lambda s: any(c.words[:2] == ["sp-demo", "serve"] for c in commands_in_service(s)),
    )


def test_every_idp_and_sp_demo_variable_is_a_settings_field(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = _services_on_our_image(compose)
    assert set(_node_services(compose)) <= set(services)
    for name, service in services.items():
        environment = dict(service.get("environment") or {})
        assert_every_variable_is_read(environment, name, monkeypatch)
        for command in commands_in_service(service):
            assert_every_variable_is_read(
                {**environment, **command.assignments}, f"{name}: {command.words}", monkeypatch
            )


def test_nodes_trust_nginx_and_use_the_postgres_service(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    nginx_name, nginx = _nginx(compose)
    (network_name, nginx_network), *_ = nginx["networks"].items()
    nginx_address = ipaddress.ip_address(nginx_network["ipv4_address"])
    subnets = [c["subnet"] for c in compose["networks"][network_name]["ipam"]["config"]]
    assert any(nginx_address in ipaddress.ip_network(s) for s in subnets)
    postgres_name, postgres = _postgres(compose)
    assert network_name in postgres["networks"]
    published = {str(p["target"]): p["published"] for p in nginx["ports"]}
    for name, node in _node_services(compose).items():
        assert network_name in node["networks"], f"{name} is not on {network_name}"
        settings = settings_from_environment(node["environment"], monkeypatch)[Settings]
        assert isinstance(settings, Settings)
        assert any(
            nginx_address in ipaddress.ip_network(proxy, strict=False)
            for proxy in settings.trusted_proxies
        ), f"{name}: {nginx_name} ({nginx_address}) not in {settings.trusted_proxies}"
        url = make_url(settings.database_url)
        assert url.drivername == "postgresql+psycopg"
        assert (url.host, url.port or 5432) == (postgres_name, 5432)
        assert url.username == postgres["environment"]["POSTGRES_USER"]
        assert url.password == postgres["environment"]["POSTGRES_PASSWORD"]
        assert url.database == postgres["environment"]["POSTGRES_DB"]
        # The public URLs are nginx's published ports for the IdP origin and the card origin.
        for public_url, port_variable in (
            (settings.base_url, "IDP_HTTPS_PORT"),
            (settings.cert_login_url, "IDP_CERT_PORT"),
        ):
            target = nginx["environment"][port_variable]
            assert urlsplit(public_url).port == published.get(target), (name, public_url)


def test_only_the_nodes_keep_the_image_healthcheck(
    compose: dict[str, Any], image: ImageModel
) -> None:
    """The image's HEALTHCHECK asks /readyz on IDP_PORT: only an IdP node answers it."""
    assert image.final.healthcheck
    nodes = _node_services(compose)
    for name, service in _services_on_our_image(compose).items():
        disabled = service.get("healthcheck", {}).get("test") == ["NONE"]
        assert disabled != (name in nodes), f"{name}: healthcheck disabled={disabled}"
    for name, service in _services(compose).items():
        for needed, condition in (service.get("depends_on") or {}).items():
            if condition["condition"] == "service_healthy":
                has_check = "healthcheck" in _services(compose)[needed] or needed in nodes
                assert has_check, f"{name} waits for {needed}, which has no healthcheck"


def test_shell_scripts_in_compose_parse(compose: dict[str, Any]) -> None:
    """``sh -n``: the scripts (idp-init's nested ``su -c`` one too) are valid shell."""
    scripts = [s for service in _services(compose).values() for s in shell_scripts(service)]
    assert len(scripts) >= 3, scripts  # idp-init (outer and nested) and treserva
    for script in scripts:
        result = subprocess.run(
            ["sh", "-n", "-c", script], capture_output=True, text=True, timeout=10, check=False
        )
        assert result.returncode == 0, f"{result.stderr}\n{script}"


def test_every_command_in_compose_is_a_real_cli_command(
    compose: dict[str, Any], app_copy: Path
) -> None:
    options: dict[tuple[str, ...], set[str]] = {}
    for service in _services_on_our_image(compose).values():
        for command in commands_in_service(service):
            path = tuple(subcommand_path(command.words))
            used = {w.split("=")[0] for w in command.words if w.startswith("--")}
            options.setdefault(path, set()).update(used)
            # Files of the image a command names must be in the image.
            for word in command.words:
                if word.startswith(f"{APP_DIR}/"):
                    inside = PurePosixPath(word).relative_to(APP_DIR)
                    assert (app_copy / inside).is_file(), f"{word} is not in the image"
    assert ("idp", "serve") in options and ("sp-demo", "serve") in options

    # The venv's entry points, running the image's copy of the code (see image_packages).
    environment = {**os.environ, "PYTHONPATH": str(app_copy)}

    def show_help(path: tuple[str, ...]) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(VENV_BIN / path[0]), *path[1:], "--help"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    with ThreadPoolExecutor(2) as pool:
        answers = dict(zip(options, pool.map(show_help, options), strict=True))
    for path, answer in answers.items():
        assert answer.returncode == 0, f"{' '.join(path)} --help: {answer.stderr}"
        assert answer.stdout.startswith(f"Usage: {' '.join(path)} ")
        for option in options[path]:
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", answer.stdout), (
                f"{' '.join(path)} has no {option}"
            )


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_rules(image: ImageModel) -> None:
    final = image.final
    assert final.user and final.user.split(":")[0] not in ("root", "0"), final.user
    assert final.healthcheck, "no HEALTHCHECK"
    assert final.cmd == NODE_COMMAND
    assert "slim" in final.base_image, final.base_image
    # /opt/venv is built in one stage and run in the other: the same Python in both.
    assert {stage.base_image for stage in image.stages} == {final.base_image}
    assert final.exposed == [final.env["IDP_PORT"]]
    assert final.env["IDP_BEHIND_PROXY"] == "true"
    assert f"{IMAGE_VENV}/bin" in final.env["PATH"].split(":")
    unknown = [n for n in final.env if n.startswith("IDP_") and settings_class_of(n) is None]
    assert not unknown, f"ENV that no settings field reads: {unknown}"
    # All of the final image that this test does not rebuild is the venv.
    assert final.not_reproduced == [IMAGE_VENV]


def test_build_context_leaves_out_keys_databases_and_caches() -> None:
    """Where `make demo` and `idp pki init` put keys and state: never in the build context."""
    ignore = ContextIgnore(DOCKERIGNORE.read_text())
    for left_out in (
        "var/pki/tls/server.key.pem",
        "var/idp.sqlite3",
        "certs/generated/idp/saml-signing.key.pem",
        "metadata/sp/treserva.xml",
        "idp/__pycache__/config.cpython-311.pyc",
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
    ):
        assert ignore.excludes(PurePosixPath(left_out)), left_out
    for kept in ("idp/config.py", "idp/templates/idp", "pyproject.toml", "metadata/README.md"):
        assert not ignore.excludes(PurePosixPath(kept)), kept


def test_the_image_file_set_has_no_secrets_state_or_bytecode(
    image: ImageModel, app_copy: Path
) -> None:
    copied = [path for path in app_copy.rglob("*") if path.is_file()]
    assert (app_copy / "idp" / "config.py").is_file() and (app_copy / "idp" / "templates").is_dir()
    assert not [p for p in copied if SECRET_FILE.search(p.name)]
    assert not [p for p in copied if "__pycache__" in p.parts or p.suffix == ".pyc"]
    relative = [p.relative_to(app_copy) for p in copied]
    assert not [p for p in relative if p.parts[0] in ("var", "tests", ".venv", ".git")]
    sources = image.final.files.values()
    assert not [s for s in sources if (REPO_ROOT / "var") in s.parents]


# --- a node from the image's files -----------------------------------------------------------


def image_packages() -> list[str]:
    """The top-level packages pyproject.toml installs (``idp*``, ``sp_demo*`` → idp, sp_demo)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({pattern.rstrip("*").rstrip(".") for pattern in include})


def container_environment(final: Stage, overrides: dict[str, str]) -> dict[str, str]:
    """The Dockerfile's ENV with ``overrides``, the venv here standing in for /opt/venv."""
    missing = set(overrides) - set(final.env)
    assert not missing, f"the Dockerfile no longer sets {missing}"
    environment = {}
    for name, value in {**final.env, **overrides}.items():
        value = value.replace(str(IMAGE_VENV), str(LOCAL_VENV))
        environment[name] = value.replace("$PATH", os.environ.get("PATH", ""))
    return environment


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No IDP_* or PYTHONPATH from the test's own environment reaches the node."""
    for name in list(os.environ):
        if name.startswith("IDP_") or name == "PYTHONPATH":
            monkeypatch.delenv(name)
    yield monkeypatch


def test_a_node_runs_from_the_image_file_set(
    image: ImageModel,
    app_copy: Path,
    test_pki: TestPki,
    tmp_path: Path,
    clean_environment: pytest.MonkeyPatch,
) -> None:
    final = image.final
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    port = free_port()
    environment = {
        **container_environment(
            final,
            # Loopback instead of 0.0.0.0: the test talks to the node only over loopback.
            {
                "IDP_VAR_DIR": str(var_dir),
                "IDP_HOST": "127.0.0.1",
                "IDP_PORT": str(port),
                "IDP_SP_METADATA_DIR": str(app_copy / "metadata" / "sp"),
            },
        ),
        "PYTHONPATH": str(app_copy),
        # What compose.yml adds: the PKI (a shared volume there) and nginx's address.
        "IDP_PKI_DIR": str(test_pki.directory),
        "IDP_TRUSTED_PROXIES": json.dumps(["127.0.0.1/32"]),
    }
    # WORKDIR is the idp user's home, which is IDP_VAR_DIR: here the temporary var directory.
    assert PurePosixPath(final.env["IDP_VAR_DIR"]) == final.workdir
    clean_environment.chdir(var_dir)

    def run_in_container(command: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            command,
            env={**os.environ, **environment},
            cwd=var_dir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # The editable install would supply a package the copy lacks: each must come from the copy.
    packages = image_packages()
    imported = run_in_container(
        [
            "python",
            "-c",
            f"import {', '.join(packages)}; print({'.__file__, '.join(packages)}.__file__)",
        ]
    )
    assert imported.returncode == 0, imported.stderr
    for package, file in zip(packages, imported.stdout.split(), strict=True):
        assert Path(file).is_relative_to(app_copy), f"{package} imported from {file}"

    assert final.cmd and final.healthcheck
    base_url = f"http://127.0.0.1:{port}"
    node = start_server(
        final.cmd, environment, f"{base_url}/healthz", test_pki.tls_ca_cert, tmp_path / "node.log"
    )
    try:
        for path in ("/healthz", "/readyz"):
            answer = httpx.get(f"{base_url}{path}", timeout=10)
            assert answer.status_code == 200, f"{path}: {answer.text}\n{node.log()}"
        # A page (idp/templates), its style sheet (idp/web/static) and the signed metadata.
        start_page = httpx.get(f"{base_url}/", timeout=10)
        assert start_page.status_code == 200 and "Åtkomsttjänst" in start_page.text
        assert httpx.get(f"{base_url}/static/style.css", timeout=10).status_code == 200
        assert httpx.get(f"{base_url}/saml/metadata", timeout=10).status_code == 200
        healthy = run_in_container(final.healthcheck)
        assert healthy.returncode == 0, f"{healthy.stderr}\n{node.log()}"
    finally:
        node.stop()
    stopped = run_in_container(final.healthcheck)
    assert stopped.returncode != 0, stopped.stdout
    assert str(port) in stopped.stderr

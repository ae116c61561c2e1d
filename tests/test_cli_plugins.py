"""The ``idp`` command's plugins (idp/command_plugins.py): the test kit's groups come from the
``atkomsttjansten.cli`` entry points of the installed distribution, a plugin from any other
installed distribution is added the same way, and one that cannot be loaded is named with its
cause instead of a traceback, while the rest of ``idp`` keeps working.

The broken plugins are a real distribution on ``sys.path`` (a ``dist-info`` directory with an
``entry_points.txt``), found by :mod:`importlib.metadata` as an installed package is.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from idp.cli import main as idp_main
from idp.command_plugins import ENTRY_POINT_GROUP, PluginGroup
from siths_testkit.cli import app_group, card_group, pki_group
from tests.helpers.support import VENV_BIN

ENTRY_POINTS = """\
hello = plugin_hello:hello
missing = no_such_module_for_idp:group
raises = plugin_that_raises:group
notacommand = plugin_not_a_command:group
serve = plugin_hello:hello
"""
MODULES = {
    "plugin_hello": (
        "import click\n\n\n@click.command()\ndef hello():\n    click.echo('hello from a plugin')\n"
    ),
    "plugin_that_raises": "raise RuntimeError('the plugin broke while importing')\n",
    "plugin_not_a_command": "group = 42\n",
}


def _site_with_plugins(directory: Path) -> Path:
    """A directory that, on ``sys.path``, holds the installed distribution ``idp-test-plugins``."""
    dist_info = directory / "idp_test_plugins-1.0.dist-info"
    dist_info.mkdir(parents=True)
    metadata = "Metadata-Version: 2.1\nName: idp-test-plugins\nVersion: 1.0\n"
    (dist_info / "METADATA").write_text(metadata)
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{ENTRY_POINTS}")
    for name, source in MODULES.items():
        (directory / f"{name}.py").write_text(source)
    return directory


@click.command("serve")
def _builtin_serve() -> None:
    click.echo("the built-in serve")


@pytest.fixture
def idp_like(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> click.Group:
    """A fresh group shaped like ``idp`` (one built-in command), with the broken plugins
    installed beside the real distribution's."""
    monkeypatch.syspath_prepend(str(_site_with_plugins(tmp_path / "site")))
    return PluginGroup(name="idp", commands={"serve": _builtin_serve})


def test_the_test_kit_groups_come_from_the_installed_entry_points() -> None:
    context = click.Context(idp_main)
    assert idp_main.get_command(context, "pki") is pki_group
    assert idp_main.get_command(context, "card") is card_group
    assert idp_main.get_command(context, "app") is app_group
    assert {"pki", "card", "app", "serve", "people"} <= set(idp_main.list_commands(context))
    # Loaded complete: the revocation commands hang under pki and card.
    assert {"crl", "ocsp-responder"} <= set(pki_group.commands)
    assert "revoke" in card_group.commands


def test_a_plugin_of_another_distribution_is_added(idp_like: click.Group) -> None:
    result = CliRunner().invoke(idp_like, ["hello"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello from a plugin\n"


@pytest.mark.parametrize(
    ("name", "cause"),
    [
        ("missing", "ModuleNotFoundError: No module named 'no_such_module_for_idp'"),
        ("raises", "RuntimeError: the plugin broke while importing"),
        ("notacommand", "it is not a click command but an object of type int"),
    ],
)
def test_a_plugin_that_cannot_load_is_named_with_its_cause(
    idp_like: click.Group, name: str, cause: str
) -> None:
    result = CliRunner().invoke(idp_like, [name, "--help"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # click's error exit, not a crash
    assert result.output.startswith(f"Error: the command '{name}' could not be loaded from ")
    assert "(package idp-test-plugins)" in result.output
    assert cause in result.output
    assert "Reinstall the package that provides it." in result.output


def test_a_plugin_never_replaces_a_builtin_command(idp_like: click.Group) -> None:
    result = CliRunner().invoke(idp_like, ["serve"])
    assert result.exit_code == 0
    assert result.output == "the built-in serve\n"
    idp_like.list_commands(click.Context(idp_like))
    assert "another command already has this name" in idp_like.plugin_failures["serve"]


def test_the_help_lists_what_loaded_and_warns_about_the_rest(idp_like: click.Group) -> None:
    result = CliRunner().invoke(idp_like, ["--help"])
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line}
    assert listed == {"hello", "serve", "pki", "card", "app"}
    for name in ("missing", "raises", "notacommand"):
        assert f"Warning: the command '{name}' is missing: " in result.stderr
    assert result.stderr.count("Warning:") == 4  # the three above and the shadowing 'serve'


@pytest.mark.integration  # runs the installed `idp` program
def test_the_idp_program_says_which_plugin_failed_and_keeps_working(tmp_path: Path) -> None:
    site = _site_with_plugins(tmp_path / "site")

    def idp(*args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path)}
        command = [str(VENV_BIN / "idp"), *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)

    broken = idp("raises")
    assert broken.returncode == 1
    assert "RuntimeError: the plugin broke while importing" in broken.stderr
    assert "Traceback" not in broken.stderr + broken.stdout
    working = idp("pki", "init", "--help")
    assert working.returncode == 0, working.stderr
    assert "--revocation-url" in working.stdout

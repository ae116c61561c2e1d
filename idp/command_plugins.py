"""Commands that other installed packages add to the ``idp`` command, found through entry points.

A package registers a click command in the entry-point group :data:`ENTRY_POINT_GROUP`; the
entry point's name is the command's name under ``idp``. In pyproject.toml::

    [project.entry-points."atkomsttjansten.cli"]
    pki = "siths_testkit.cli:pki_group"

That is how the test kit (``siths_testkit``) adds ``idp pki``, ``idp card`` and ``idp app``
without the IdP's code importing it. :class:`PluginGroup` loads the plugins on first need, when a
name is not one of its own commands or when the commands are listed (``idp --help``), so
``idp serve`` never loads one. A plugin that cannot be loaded is named with its cause:
``idp NAME`` stops with that message (exit status 1), and ``idp --help`` warns and lists the rest.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

import click

__all__ = ["ENTRY_POINT_GROUP", "PluginGroup"]

ENTRY_POINT_GROUP = "atkomsttjansten.cli"


def _origin(entry_point: EntryPoint) -> str:
    distribution = entry_point.dist.name if entry_point.dist is not None else "unknown package"
    return f"{entry_point.value} (package {distribution})"


class PluginGroup(click.Group):
    """A click group whose commands are its own plus those registered in ``entry_point_group``.

    A plugin never replaces a command the group already has; one that tries is reported as a
    failure like one that does not import.
    """

    def __init__(
        self, *args: Any, entry_point_group: str = ENTRY_POINT_GROUP, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.entry_point_group = entry_point_group
        # Command name → why its plugin was not added, once the plugins are loaded.
        self.plugin_failures: dict[str, str] = {}
        self._plugins_loaded = False
        self._failures_shown = False

    def load_plugins(self) -> None:
        """Add every plugin command that loads; note the others in :attr:`plugin_failures`."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        found = entry_points(group=self.entry_point_group)
        for entry_point in sorted(found, key=lambda point: point.name):
            problem = self._add_plugin(entry_point)
            if problem is not None:
                self.plugin_failures[entry_point.name] = f"{_origin(entry_point)}: {problem}"

    def _add_plugin(self, entry_point: EntryPoint) -> str | None:
        if entry_point.name in self.commands:
            return "another command already has this name"
        try:
            command = entry_point.load()
        # Whatever a plugin's import raises is its own failure, not the idp command's.
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        if not isinstance(command, click.Command):
            return f"it is not a click command but an object of type {type(command).__name__}"
        self.add_command(command, entry_point.name)
        return None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        self.load_plugins()
        if cmd_name in self.plugin_failures:
            raise click.ClickException(
                f"the command '{cmd_name}' could not be loaded from "
                f"{self.plugin_failures[cmd_name]}. Reinstall the package that provides it."
            )
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.load_plugins()
        if not self._failures_shown:
            self._failures_shown = True
            for name, problem in self.plugin_failures.items():
                click.echo(f"Warning: the command '{name}' is missing: {problem}", err=True)
        return super().list_commands(ctx)

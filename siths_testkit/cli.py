"""The test kit's command groups under ``idp``: ``idp pki …``, ``idp card …``, ``idp app …``.

pyproject.toml registers each group in the ``atkomsttjansten.cli`` entry-point group, and the
``idp`` command adds them when it needs them (:class:`idp.cli.PluginGroup`), so the IdP's code
never imports this package. The groups here are complete: the revocation commands are attached
to ``pki`` and ``card`` when this module is imported.
"""

from __future__ import annotations

from siths_testkit.app_simulator.cli import app_group
from siths_testkit.pki.cli import card_group, pki_group
from siths_testkit.pki.revocation_cli import register_revocation_commands

__all__ = ["app_group", "card_group", "pki_group"]

register_revocation_commands(pki_group, card_group)

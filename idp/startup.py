"""The ``idp`` command's entry point: a clear error, not a traceback, when the installation
cannot sign XML (lxml and xmlsec on different libxml2 builds, idp/libxml2_pairing.py).

The check runs before ``idp.cli`` is imported, because importing it loads xmlsec through the SAML
modules, and that import is what fails on a mismatch.
"""

from __future__ import annotations

import sys

from idp.libxml2_pairing import libxml2_problem

if (_problem := libxml2_problem()) is not None:
    sys.exit(f"idp: {_problem}")

# Imported only once the check above has passed (see the module docstring).
from idp.cli import main

__all__ = ["main"]

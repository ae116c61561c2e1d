"""The lxml/xmlsec libxml2 pairing check that runs before the ``idp`` command starts."""

from __future__ import annotations

import subprocess

import lxml.etree
import pytest
import xmlsec

from idp.libxml2_pairing import libxml2_problem, load_problem, pairing_problem
from tests.helpers.support import VENV_BIN

pytestmark = pytest.mark.unit


def test_one_libxml2_is_no_problem() -> None:
    assert pairing_problem((2, 14, 6), (2, 14, 6)) is None


def test_two_libxml2_versions_are_named_with_the_fix() -> None:
    problem = pairing_problem((2, 14, 6), (2, 13, 8))
    assert problem is not None
    assert "lxml runs on libxml2 2.14.6 but xmlsec on libxml2 2.13.8" in problem
    assert "pip install --force-reinstall --no-binary lxml,xmlsec" in problem


def test_xmlsec_that_will_not_load_is_explained() -> None:
    problem = load_problem("InternalError: lxml & xmlsec libxml2 library version mismatch")
    assert "xmlsec cannot be loaded (InternalError: lxml & xmlsec libxml2" in problem
    assert ".".join(map(str, lxml.etree.LIBXML_VERSION)) in problem


def test_this_installation_pairs_them() -> None:
    assert xmlsec.get_libxml_version() == lxml.etree.LIBXML_VERSION
    assert libxml2_problem() is None


def test_the_idp_command_starts_through_the_check() -> None:
    script = (VENV_BIN / "idp").read_text(encoding="utf-8")
    assert "from idp.startup import main" in script
    done = subprocess.run(
        [str(VENV_BIN / "idp"), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and "serve" in done.stdout, done.stderr

"""lxml and xmlsec must load one and the same libxml2.

pysaml2's in-process signatures (idp/saml/xmlsec_backend.py) hand lxml trees to xmlsec; two
libxml2 builds in one process corrupt memory, so xmlsec (>= 1.3.14) refuses to load beside a
different one, with an error that names neither version. This module says which versions met
and how to fix the installation, before anything else of the IdP is imported (idp/startup.py).
"""

from __future__ import annotations

import lxml.etree

try:
    import xmlsec
except Exception as exc:  # xmlsec raises its own InternalError, not ImportError, on a mismatch
    xmlsec = None
    _XMLSEC_LOAD_ERROR = f"{type(exc).__name__}: {exc}"
else:
    _XMLSEC_LOAD_ERROR = ""

FIX = (
    "install lxml and xmlsec wheels that carry the same libxml2 (pyproject.toml names a "
    "pair), or build both against the system's libxml2: "
    "pip install --force-reinstall --no-binary lxml,xmlsec lxml xmlsec"
)


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def pairing_problem(lxml_libxml2: tuple[int, ...], xmlsec_libxml2: tuple[int, ...]) -> str | None:
    """None when both libraries run on one libxml2 version, else the operator's error text."""
    if lxml_libxml2 == xmlsec_libxml2:
        return None
    return (
        f"lxml runs on libxml2 {_dotted(lxml_libxml2)} but xmlsec on libxml2 "
        f"{_dotted(xmlsec_libxml2)}; XML signatures need one libxml2: {FIX}"
    )


def load_problem(error: str) -> str:
    """The operator's error text when xmlsec did not load at all (``error`` is why)."""
    return (
        f"xmlsec cannot be loaded ({error}); lxml runs on libxml2 "
        f"{_dotted(lxml.etree.LIBXML_VERSION)}. If the versions differ: {FIX}"
    )


def libxml2_problem() -> str | None:
    """What keeps XML signatures from working in this installation, or None."""
    if xmlsec is None:
        return load_problem(_XMLSEC_LOAD_ERROR)
    return pairing_problem(lxml.etree.LIBXML_VERSION, xmlsec.get_libxml_version())

"""Where ``make demo``'s programs listen, read from the same settings the programs read.

Each port is the program's own setting (``IDP_PORT``, ``IDP_CERT_PORT``, ``SP_DEMO_PORT``,
``PORTAL_PORT``, ``PORTAL_SMTP_PORT``) or, for the test PKI's OCSP responder, ``IDP_OCSP_PORT``
(default: the port of the URL the PKI's cards point at). :func:`demo_environment` turns the
ports into the URLs every program needs about the others; a URL set in the environment
(``IDP_BASE_URL``, ``SP_DEMO_BASE_URL``, …) is kept as it is.
"""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

# The programs' own defaults (idp/config.py, sp_demo/config.py, portal/config.py, and the
# revocation URL `idp pki init` gives the test PKI).
DEFAULTS = {
    "IDP_PORT": 8443,
    "IDP_CERT_PORT": 8444,
    "SP_DEMO_PORT": 8445,
    "PORTAL_PORT": 8447,
    "PORTAL_SMTP_PORT": 8025,
    "IDP_OCSP_PORT": 8480,
}
# The address each program listens on, by the setting that holds it (default 127.0.0.1).
HOST_SETTINGS = {
    "IDP_PORT": "IDP_HOST",
    "IDP_CERT_PORT": "IDP_HOST",
    "SP_DEMO_PORT": "SP_DEMO_HOST",
    "PORTAL_PORT": "PORTAL_HOST",
    "PORTAL_SMTP_PORT": "PORTAL_SMTP_HOST",
    "IDP_OCSP_PORT": "",
}
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class DemoPorts:
    """The port of each program of the demo, by the setting it comes from."""

    idp: int
    idp_cert: int
    treserva: int
    portal: int
    smtp: int
    ocsp: int

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], published_ocsp_url: str) -> DemoPorts:
        """The ports ``environ`` sets, else the defaults; ``published_ocsp_url`` is the test
        PKI's revocation URL (``""`` before the PKI exists), whose port is the OCSP default.

        Raises :class:`SystemExit` naming the setting when a value is not a port number."""
        published_port = (
            urllib.parse.urlsplit(published_ocsp_url).port if published_ocsp_url else None
        )
        defaults = {**DEFAULTS, "IDP_OCSP_PORT": published_port or DEFAULTS["IDP_OCSP_PORT"]}
        ports = {
            name: _port(name, environ.get(name), default) for name, default in defaults.items()
        }
        return cls(
            idp=ports["IDP_PORT"],
            idp_cert=ports["IDP_CERT_PORT"],
            treserva=ports["SP_DEMO_PORT"],
            portal=ports["PORTAL_PORT"],
            smtp=ports["PORTAL_SMTP_PORT"],
            ocsp=ports["IDP_OCSP_PORT"],
        )

    def by_setting(self) -> dict[str, int]:
        return {
            "IDP_PORT": self.idp,
            "IDP_CERT_PORT": self.idp_cert,
            "SP_DEMO_PORT": self.treserva,
            "PORTAL_PORT": self.portal,
            "PORTAL_SMTP_PORT": self.smtp,
            "IDP_OCSP_PORT": self.ocsp,
        }

    @property
    def revocation_url(self) -> str:
        """Where the demo's OCSP responder serves (and where a new test PKI's cards point)."""
        return f"http://{LOOPBACK}:{self.ocsp}"


def _port(name: str, value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    if value.isdigit() and 0 < int(value) < 65536:
        return int(value)
    raise SystemExit(f"{name}={value!r} is not a port number (1-65535)")


def demo_environment(ports: DemoPorts, environ: Mapping[str, str]) -> dict[str, str]:
    """The settings that make the programs find each other on ``ports``: each port under its
    own setting, and each URL (the IdP's, its certificate login's, mock Treserva's, the
    portal's) from its port unless ``environ`` already sets it."""
    environment = {name: str(port) for name, port in ports.by_setting().items()}

    def url(name: str, port: int) -> str:
        return (environ.get(name) or f"https://localhost:{port}").rstrip("/")

    idp = url("IDP_BASE_URL", ports.idp)
    treserva = url("SP_DEMO_BASE_URL", ports.treserva)
    portal = url("PORTAL_BASE_URL", ports.portal)
    environment.update(
        {
            "IDP_BASE_URL": idp,
            "IDP_CERT_LOGIN_URL": url("IDP_CERT_LOGIN_URL", ports.idp_cert),
            "SP_DEMO_BASE_URL": treserva,
            "PORTAL_BASE_URL": portal,
        }
    )
    # What each program knows of the others, unless set.
    about_the_others = {
        "SP_DEMO_IDP_METADATA_URL": f"{idp}/saml/metadata",
        "SP_DEMO_OIDC_ISSUER": idp,
        "SP_DEMO_PORTAL_URL": portal,
        "PORTAL_OIDC_ISSUER": idp,
        "PORTAL_TRESERVA_URL": treserva,
    }
    environment.update(
        {name: environ.get(name) or value for name, value in about_the_others.items()}
    )
    return environment


def ports_in_use(ports: DemoPorts, environ: Mapping[str, str]) -> list[str]:
    """One line for each port another process already listens on (empty: all are free).

    Checked before anything starts: a demo program that found its port taken would exit, but
    the demo could meanwhile take the other process's answer for its own."""
    taken = []
    for name, port in ports.by_setting().items():
        host = environ.get(HOST_SETTINGS[name]) if HOST_SETTINGS[name] else None
        host = host or LOOPBACK
        family, kind, protocol, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
        with socket.socket(family, kind, protocol) as probe:
            # As the servers bind: a port left in TIME_WAIT by an earlier run is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                taken.append(f"port {port} on {host} ({name}) is already in use: {exc.strerror}")
    return taken

"""Where the client certificate of a request comes from.

Two sources, in this order:

1. The ASGI TLS extension (``scope["extensions"]["tls"]["client_cert_chain"]``). The embedded
   certificate listener (``idp.server.cert_listener``) fills it in; an ASGI server that
   implements the extension would too.
2. The ``X-SSL-Client-Cert`` header (nginx's ``$ssl_client_escaped_cert``), believed only when
   the TCP peer is one of ``trusted_proxies``. From anyone else it is ignored and reported.
"""

from __future__ import annotations

import functools
import ipaddress
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.requests import Request


@dataclass(frozen=True)
class PresentedCertificate:
    """The leaf certificate (PEM bytes) and any intermediates the client sent."""

    leaf: bytes
    intermediates: tuple[bytes, ...] = ()


class TrustedProxies:
    """A set of proxy addresses (IPs or networks) whose certificate header is believed."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._networks = [ipaddress.ip_network(entry, strict=False) for entry in entries]
        # Asked for every request (the request id, the certificate header): remember the
        # answer per peer address instead of parsing the address each time.
        self._answers = functools.lru_cache(maxsize=4096)(self._listed)

    def __contains__(self, address: str | None) -> bool:
        if not address or not self._networks:
            return False
        return self._answers(address)

    def _listed(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)


@dataclass(frozen=True)
class CertificateSource:
    certificate: PresentedCertificate | None
    # A certificate header arrived from a peer that is not a trusted proxy (and was ignored).
    untrusted_header_from: str | None = None


def presented_certificate(
    request: Request, *, header_name: str, trusted_proxies: TrustedProxies
) -> CertificateSource:
    """The client certificate this request carries, from a source that may be believed."""
    tls = request.scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or ()
    if chain:
        return CertificateSource(
            PresentedCertificate(
                leaf=chain[0].encode("ascii"),
                intermediates=tuple(pem.encode("ascii") for pem in chain[1:]),
            )
        )
    header = request.headers.get(header_name)
    if header is None:
        return CertificateSource(None)
    peer = request.client.host if request.client else None
    if peer not in trusted_proxies:
        return CertificateSource(None, untrusted_header_from=peer or "unknown")
    if not header.strip():
        return CertificateSource(None)  # nginx sends an empty value when there was no cert
    return CertificateSource(PresentedCertificate(leaf=urllib.parse.unquote(header).encode()))

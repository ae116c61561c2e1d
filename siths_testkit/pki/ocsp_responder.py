"""The test PKI's OCSP responder and CRL server (``idp pki ocsp-responder``).

One small HTTP server (standard library, one thread per request) that answers for the HSA-id
CA:

- ``POST /ocsp`` (``application/ocsp-request``) and ``GET /ocsp/{base64 request}`` (RFC 6960
  appendix A): a response signed by the delegated responder certificate, ``good`` or
  ``revoked`` from the registry, the request's nonce echoed, ``nextUpdate`` a configurable
  number of seconds ahead (which is how long the IdP may cache a good answer);
- ``GET /crl/hsa-id-ca.crl`` and ``/crl/person-id-ca.crl``: fresh CRLs (DER) with the same
  ``nextUpdate``.

The registry (``revocation/revoked.json``) is re-read whenever it changes, so ``idp card revoke``
takes effect at the next request without a restart.

For the IdP's rejection tests the responder also misbehaves, deliberately and only on its own
paths: ``/ocsp/<misbehaviour>`` for each :class:`Misbehaviour` (POST or GET) and the CRLs
``/crl/expired.crl`` and ``/crl/wrongly-signed.crl``. Test cards point their AIA or CRL
distribution point at one of these. Nothing misbehaves on ``/ocsp`` itself.

TEST material only: it signs with keys read from the PKI directory.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import os
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509 import ocsp

from siths_testkit.pki.issue import Issuer
from siths_testkit.pki.model import TestPki
from siths_testkit.pki.revocation import (
    RevokedEntry,
    build_crl,
    crl_name_of,
    load_registry,
    ocsp_responder_certificate,
    published_url,
    revocation_files,
)
from siths_testkit.pki.storage import load_certificate, load_private_key

__all__ = [
    "DEFAULT_NEXT_UPDATE_SECONDS",
    "Misbehaviour",
    "OcspResponder",
    "make_server",
    "serve",
]

logger = logging.getLogger("siths_testkit.pki.ocsp_responder")

DEFAULT_NEXT_UPDATE_SECONDS = 60
MAX_REQUEST_BYTES = 16 * 1024
_OCSP_RESPONSE = "application/ocsp-response"
_CRL = "application/pkix-crl"
# How far in the past the stale answers and the expired CRL lie: well beyond any sane clock
# skew, so they are refused whatever the IdP's skew setting.
_STALE_BY = dt.timedelta(days=1)


class Misbehaviour(StrEnum):
    """How ``/ocsp/<value>`` gets it wrong; each names the check it must fail at the IdP."""

    UNRELATED_KEY = "unrelated-key"  # names and embeds the real responder, another key signs
    NO_OCSP_EKU = "no-ocsp-eku"  # signed by a certificate of the CA without id-kp-OCSPSigning
    STALE = "stale"  # thisUpdate and nextUpdate a day in the past
    OTHER_CERTIFICATE = "other-certificate"  # about another serial number
    WRONG_NONCE = "wrong-nonce"  # as a replayed response: someone else's nonce
    GARBAGE = "garbage"  # 200 OK, bytes that are no OCSP response
    UNKNOWN = "unknown"  # status "unknown"


BAD_CRLS = ("expired.crl", "wrongly-signed.crl")


@dataclass(frozen=True)
class _Signer:
    certificate: x509.Certificate
    key: RSAPrivateKey


class OcspResponder:
    """Builds OCSP responses and CRLs for a test PKI; safe to share between threads.

    Keys are loaded once here (loading an RSA key costs tens of milliseconds).
    """

    def __init__(self, pki: TestPki, *, next_update: dt.timedelta) -> None:
        files = revocation_files(pki.directory)
        if not files.responder_cert.is_file():
            raise FileNotFoundError(
                f"the test PKI in {pki.directory} has no OCSP responder certificate: it was "
                "created before revocation was published. Create a new one (remove the "
                "directory and run `idp pki init`)."
            )
        self._directory = pki.directory
        self._next_update = next_update
        self.hsa_ca = Issuer(load_certificate(pki.hsa_ca_cert), load_private_key(pki.hsa_ca_key))
        self._person_id_ca = Issuer(
            load_certificate(pki.person_id_ca_cert), load_private_key(pki.person_id_ca_key)
        )
        self._responder = _Signer(
            load_certificate(files.responder_cert), load_private_key(files.responder_key)
        )
        self._no_eku = _Signer(
            load_certificate(files.no_eku_responder_cert),
            load_private_key(files.no_eku_responder_key),
        )
        # The forged HSA-id CA's key: same name as the real CA, not its key. Exactly "an
        # unrelated key" for a wrongly signed response or CRL. cryptography signs a response
        # only with the key of the certificate it names the responder by, so the impostor gets
        # a certificate with the real responder's name (issued by the forged CA); the response
        # then embeds only the genuine responder certificate, which the signature must fail.
        self._impostor_key = load_private_key(pki.forged_hsa_ca_key)
        forged_ca = Issuer(load_certificate(pki.forged_hsa_ca_cert), self._impostor_key)
        now = dt.datetime.now(dt.UTC)
        self._impostor = _Signer(
            ocsp_responder_certificate(
                self._impostor_key,
                self._responder.certificate.subject,
                forged_ca,
                not_before=now - dt.timedelta(hours=1),
                not_after=now + dt.timedelta(days=365),
            ),
            self._impostor_key,
        )
        self._registry_path = files.registry
        self._registry_lock = threading.Lock()
        self._registry_stamp: tuple[int, int] | None = None
        self._revoked: dict[int, RevokedEntry] = {}
        self._entries: list[RevokedEntry] = []

    # --- the registry ------------------------------------------------------------------------

    def _registry(self) -> tuple[list[RevokedEntry], dict[int, RevokedEntry]]:
        """The registry, re-read when its file changed (a stat per request, no more)."""
        try:
            status = os.stat(self._registry_path)
            stamp: tuple[int, int] | None = (status.st_mtime_ns, status.st_size)
        except FileNotFoundError:
            stamp = None
        with self._registry_lock:
            if stamp != self._registry_stamp:
                issuer_dn = self.hsa_ca.certificate.subject.rfc4514_string()
                self._entries = load_registry(self._directory)
                self._revoked = {
                    entry.serial: entry for entry in self._entries if entry.issuer == issuer_dn
                }
                self._registry_stamp = stamp
            return self._entries, self._revoked

    # --- OCSP --------------------------------------------------------------------------------

    def ocsp(
        self, request_der: bytes, misbehaviour: Misbehaviour | None, now: dt.datetime
    ) -> bytes:
        """The DER response to one DER request (an error response for a malformed one)."""
        if misbehaviour is Misbehaviour.GARBAGE:
            return b"this is not an OCSP response " + os.urandom(16)
        try:
            request = ocsp.load_der_ocsp_request(request_der)
            algorithm = request.hash_algorithm
            nonce = _nonce_of(request)
        except (ValueError, UnsupportedAlgorithm):
            return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        if not self._is_our_ca(request, algorithm):
            # Not authoritative for any other CA (RFC 6960 §2.3 "unauthorized").
            return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        _entries, revoked = self._registry()
        entry = revoked.get(request.serial_number)
        status = ocsp.OCSPCertStatus.REVOKED if entry else ocsp.OCSPCertStatus.GOOD
        this_update, next_update = now, now + self._next_update
        serial = request.serial_number
        signer = embedded = self._responder
        if misbehaviour is Misbehaviour.UNKNOWN:
            status, entry = ocsp.OCSPCertStatus.UNKNOWN, None
        elif misbehaviour is Misbehaviour.STALE:
            this_update, next_update = now - 2 * _STALE_BY, now - _STALE_BY
        elif misbehaviour is Misbehaviour.OTHER_CERTIFICATE:
            serial += 1
            entry = revoked.get(serial)
            status = ocsp.OCSPCertStatus.REVOKED if entry else ocsp.OCSPCertStatus.GOOD
        elif misbehaviour is Misbehaviour.WRONG_NONCE:
            nonce = os.urandom(16)
        elif misbehaviour is Misbehaviour.NO_OCSP_EKU:
            signer = embedded = self._no_eku
        elif misbehaviour is Misbehaviour.UNRELATED_KEY:
            signer = self._impostor
        reason = (
            entry.reason if entry and entry.reason is not x509.ReasonFlags.unspecified else None
        )
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                issuer_name_hash=request.issuer_name_hash,
                issuer_key_hash=request.issuer_key_hash,
                serial_number=serial,
                algorithm=algorithm,
                cert_status=status,
                this_update=this_update,
                next_update=next_update,
                revocation_time=entry.revoked_at if entry else None,
                revocation_reason=reason,
            )
            # By name: the impostor's certificate has the real responder's name.
            .responder_id(ocsp.OCSPResponderEncoding.NAME, signer.certificate)
            .certificates([embedded.certificate])
        )
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        response = builder.sign(signer.key, hashes.SHA256())
        return response.public_bytes(serialization.Encoding.DER)

    def _is_our_ca(self, request: ocsp.OCSPRequest, algorithm: hashes.HashAlgorithm) -> bool:
        try:
            # The CertID of any certificate from our CA (the responder's own will do) carries
            # the CA's name and key hashes, computed the standard way for this algorithm.
            expected = (
                ocsp.OCSPRequestBuilder()
                .add_certificate(self._responder.certificate, self.hsa_ca.certificate, algorithm)
                .build()
            )
        except ValueError:
            return False
        return (
            request.issuer_name_hash == expected.issuer_name_hash
            and request.issuer_key_hash == expected.issuer_key_hash
        )

    # --- CRLs --------------------------------------------------------------------------------

    def crl(self, name: str, now: dt.datetime) -> bytes | None:
        """The DER CRL called ``name`` (``hsa-id-ca.crl``, ``person-id-ca.crl`` or one of
        :data:`BAD_CRLS`), or ``None`` if there is no such CRL."""
        entries, _revoked = self._registry()
        this_update, next_update = now, now + self._next_update
        issuer, signing_key = None, None
        for candidate in (self.hsa_ca, self._person_id_ca):
            if name == crl_name_of(candidate.certificate):
                issuer = candidate
        if name == "expired.crl":
            issuer = self.hsa_ca
            this_update, next_update = now - 2 * _STALE_BY, now - _STALE_BY
        elif name == "wrongly-signed.crl":
            issuer, signing_key = self.hsa_ca, self._impostor_key
        if issuer is None:
            return None
        crl = build_crl(
            issuer,
            entries,
            this_update=this_update,
            next_update=next_update,
            signing_key=signing_key,
        )
        return crl.public_bytes(serialization.Encoding.DER)


def _nonce_of(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )


def _split_ocsp_path(path: str) -> tuple[Misbehaviour | None, str] | None:
    """``/ocsp[/<misbehaviour>][/<rest>]`` → (misbehaviour, rest); ``None`` if not OCSP."""
    if path != "/ocsp" and not path.startswith("/ocsp/"):
        return None
    rest = path[len("/ocsp/") :]
    head, _, tail = rest.partition("/")
    try:
        # A base64 DER request starts with "M" (SEQUENCE), so it never looks like a name.
        return Misbehaviour(head), tail
    except ValueError:
        return None, rest


class _Handler(BaseHTTPRequestHandler):
    server: _ResponderServer
    server_version = "idp-test-ocsp/1"
    # Keep-alive, so the IdP's HTTP client can reuse its connection.
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle on, the second waits for the client's
    # delayed ACK (40 ms on Linux) on every answer over a kept-alive connection.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    def _send(self, status: int, content_type: str, body: bytes, *, max_age: int = 0) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # RFC 5019 §6.2: GET responses may be cached by proxies, until nextUpdate at most.
        self.send_header("Cache-Control", f"max-age={max_age}" if max_age else "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)

    def do_GET(self) -> None:
        self._guarded(self._get)

    def do_POST(self) -> None:
        self._guarded(self._post)

    def _guarded(self, handle: Callable[[], None]) -> None:
        # A bug must look like a server error (500) to the client, not like a network failure.
        try:
            handle()
        except Exception:
            logger.exception("error answering %s %s", self.command, self.path)
            self.close_connection = True
            self._send(500, "text/plain; charset=utf-8", b"internal error\n")

    def _get(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        responder = self.server.responder
        if path in ("/", "/health"):
            self._send(200, "text/plain; charset=utf-8", b"TEST OCSP responder: POST /ocsp\n")
            return
        if path.startswith("/crl/"):
            body = responder.crl(path[len("/crl/") :], self._now())
            if body is None:
                self._send(404, "text/plain; charset=utf-8", b"no such CRL\n")
            else:
                self._send(200, _CRL, body)
            return
        split = _split_ocsp_path(path)
        if split is None:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")
            return
        misbehaviour, encoded = split
        try:
            request = base64.b64decode(urllib.parse.unquote(encoded), validate=True)
        except (binascii.Error, ValueError):
            request = b""
        self._send(200, _OCSP_RESPONSE, responder.ocsp(request, misbehaviour, self._now()))

    def _post(self) -> None:
        split = _split_ocsp_path(urllib.parse.urlsplit(self.path).path)
        if split is None or split[1]:
            self._send(404, "text/plain; charset=utf-8", b"POST to /ocsp\n")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(411, "text/plain; charset=utf-8", b"Content-Length required\n")
            return
        if not 0 <= length <= MAX_REQUEST_BYTES:
            self.close_connection = True
            self._send(413, "text/plain; charset=utf-8", b"request too large\n")
            return
        body = self.rfile.read(length)
        self._send(200, _OCSP_RESPONSE, self.server.responder.ocsp(body, split[0], self._now()))


class _ResponderServer(ThreadingHTTPServer):
    daemon_threads = True
    responder: OcspResponder


def make_server(
    pki: TestPki, host: str, port: int, *, next_update: dt.timedelta
) -> ThreadingHTTPServer:
    """A bound, not yet serving, responder server; call ``serve_forever()`` on it."""
    server = _ResponderServer((host, port), _Handler)
    server.responder = OcspResponder(pki, next_update=next_update)
    return server


def serve(pki: TestPki, host: str, port: int, *, next_update: dt.timedelta) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM ends the process)."""
    server = make_server(pki, host, port, next_update=next_update)
    logger.info(
        "TEST OCSP responder for %s on http://%s:%d (cards point at %s), nextUpdate +%ds",
        pki.directory,
        host,
        port,
        published_url(pki.directory) or "nothing",
        int(next_update.total_seconds()),
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

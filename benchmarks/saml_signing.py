"""Signed SAML Responses per second on one core: in-process backend vs the xmlsec1 program.

    .venv/bin/python benchmarks/saml_signing.py [--rounds 7] [--seconds 0.6] [--cpu N]

Builds complete signed Responses (Response and Assertion both signed, RSA-SHA256 over SHA-256
digests) for the same SP, person and request on a throwaway test PKI:

- **in-process**: what the IdP sends, ``SamlIdentityProvider.build_authn_response``
  (idp/saml/response.py builds one lxml tree and signs both elements on it with the python
  ``xmlsec`` bindings, idp/saml/xmlsec_backend.py);
- **xmlsec1 program**: pysaml2's ``Server.create_authn_response`` with pysaml2's default crypto
  backend, which starts the ``xmlsec1`` program for every signature (the baseline);
- for reference, pysaml2's ``create_authn_response`` with the in-process backend plugged in
  (pysaml2's object layer, one backend round trip per signature).

All are measured in alternating rounds of the same run, pinned to one CPU (child processes
inherit the pinning, so xmlsec1's work counts on the same core); the median and the best round
of each are reported. Floors, measured in the same rounds: one raw RSA-2048 signature.

See benchmarks/README.md for what the figures mean.
"""
# ruff: noqa: E402

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

XMLSEC1 = "/usr/bin/xmlsec1"
TARGET_RATIO = 40.0
SP_ENTITY_ID = "https://sp.example.test/metadata"
SP_ACS = "https://sp.example.test/acs"
SAMBI_ATTRIBUTES = (
    "http://sambi.se/attributes/1/employeeHsaId",
    "http://sambi.se/attributes/1/givenName",
    "http://sambi.se/attributes/1/surname",
)

# pysaml2 imports CFB from its old place: silence that before pysaml2 is imported (hence the
# imports below this line, E402).
warnings.filterwarnings("ignore", message="CFB has been moved")

import xmlsec
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from saml2 import BINDING_HTTP_POST
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NameID
from saml2.sigver import CryptoBackend, CryptoBackendXmlSec1

from idp import attributes
from idp.authn import Authentication
from idp.config import Settings
from idp.saml.response import released_attributes
from idp.saml.server import AuthnRequestInfo, SamlIdentityProvider
from idp.saml.xmlsec_backend import RSA_SHA256, SHA256, XmlSecBackend
from siths_testkit.pki import init_test_pki


@dataclass(frozen=True)
class Measured:
    """Seconds per operation in each round."""

    rounds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)

    @property
    def best(self) -> float:
        return min(self.rounds)

    @property
    def spread(self) -> str:
        return f"{min(self.rounds) * 1000:.2f}–{max(self.rounds) * 1000:.2f} ms"


def time_per_call(function: Callable[[], Any], seconds: float, minimum: int) -> float:
    """Seconds per call of ``function``, called for about ``seconds`` (at least ``minimum``)."""
    calls = 0
    started = time.perf_counter()
    while True:
        function()
        calls += 1
        elapsed = time.perf_counter() - started
        if calls >= minimum and elapsed >= seconds:
            return elapsed / calls


def pin_to_one_cpu(cpu: int | None) -> int:
    allowed = sorted(os.sched_getaffinity(0))
    chosen = cpu if cpu is not None else allowed[-1]
    os.sched_setaffinity(0, {chosen})
    return chosen


def sp_metadata() -> str:
    """Metadata of a plain SP asking for the SAMBI attributes (as an integrator's SP would)."""
    config = SPConfig()
    config.load(
        {
            "entityid": SP_ENTITY_ID,
            "service": {
                "sp": {
                    "endpoints": {"assertion_consumer_service": [(SP_ACS, BINDING_HTTP_POST)]},
                    "authn_requests_signed": False,
                    "want_assertions_signed": True,
                    "required_attributes": list(SAMBI_ATTRIBUTES),
                    "requested_attribute_name_format": (
                        "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
                    ),
                }
            },
            "xmlsec_binary": XMLSEC1,
            "allow_unknown_attributes": True,
        }
    )
    xml = create_metadata_string(None, config=config, valid=24)
    return xml.decode("utf-8") if isinstance(xml, bytes) else xml


def xmlsec1_version() -> str:
    result = subprocess.run([XMLSEC1, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (default 7)")
    parser.add_argument(
        "--seconds", type=float, default=0.6, help="seconds per response round (default 0.6)"
    )
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last)")
    args = parser.parse_args()
    cpu = pin_to_one_cpu(args.cpu)

    with tempfile.TemporaryDirectory(prefix="saml-signing-bench-") as temporary:
        work = Path(temporary)
        print("Generating a throwaway test PKI ...", file=sys.stderr)
        pki = init_test_pki(work / "pki")
        metadata_dir = work / "sp-metadata"
        metadata_dir.mkdir()
        (metadata_dir / "sp.xml").write_text(sp_metadata(), encoding="utf-8")
        settings = Settings(
            var_dir=work / "var",
            pki_dir=pki.directory,
            sp_metadata_dir=metadata_dir,
            base_url="https://idp.example.test",
        )
        provider = SamlIdentityProvider(settings, b"benchmark pairwise secret")
        server = provider.server()
        in_process = server.sec.crypto
        assert isinstance(in_process, XmlSecBackend), type(in_process)
        # Exactly what pysaml2's security_context() makes from this configuration by default.
        default = CryptoBackendXmlSec1(XMLSEC1, delete_tmpfiles=True)
        request = AuthnRequestInfo("_bench-request", SP_ENTITY_ID, SP_ACS, "", False, False)
        person = Authentication(
            hsa_id="SE2120001355-E0001",
            given_name="Anna",
            surname="Andersson",
            title="Handläggare",
            organisation="Göteborgs Stad",
            mail="anna.andersson@example.invalid",
            method="siths-this-device",
            certificate_fingerprint="00",
            authn_instant=int(time.time()),
        )

        def build() -> bytes:
            return provider.build_authn_response(request, person).xml

        sp = provider.describe_sp(SP_ENTITY_ID)
        assert sp is not None
        released = attributes.released_names(
            sp.profile, sp.requested_attributes, sp.entity_categories
        )
        identity = {
            attribute.name: list(attribute.values)
            for attribute in released_attributes(sp.profile, released, person)
        }

        def build_with_pysaml2() -> str:
            """The same Response through pysaml2's object layer, signed by server.sec.crypto."""
            response = server.create_authn_response(
                identity=identity,
                in_response_to=request.request_id,
                destination=request.acs_url,
                sp_entity_id=SP_ENTITY_ID,
                name_id=NameID(format=sp.profile.name_id_format, text="benchmark-name"),
                authn={"class_ref": sp.profile.loa, "authn_instant": person.authn_instant},
                sign_response=True,
                sign_assertion=True,
                sign_alg=RSA_SHA256,
                digest_alg=SHA256,
            )
            return str(response)

        # The Response statement as pysaml2 hands it to the backend for the last signature.
        captured: list[tuple[Any, ...]] = []

        class _Capture(CryptoBackend):
            def sign_statement(
                self, statement: Any, node_name: str, key_file: str, node_id: Any
            ) -> str:
                captured.append((statement, node_name, key_file, node_id))
                return statement.decode() if isinstance(statement, bytes) else str(statement)

        server.sec.crypto = _Capture()
        build_with_pysaml2()
        response_statement = captured[-1]
        key_file = str(pki.idp_signing_key)

        # Floors: one RSA-2048 PKCS#1 v1.5 SHA-256 signature over a SHA-256-sized input, with
        # cryptography's OpenSSL and with the OpenSSL libxmlsec1 uses.
        private_key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
        assert isinstance(private_key, rsa.RSAPrivateKey)
        xmlsec_key = in_process.private_key(key_file).key

        def rsa_cryptography() -> bytes:
            return private_key.sign(b"\0" * 32, padding.PKCS1v15(), hashes.SHA256())

        def rsa_libxmlsec1() -> bytes:
            context = xmlsec.SignatureContext()
            context.key = xmlsec_key
            return context.sign_binary(b"\0" * 32, xmlsec.Transform.RSA_SHA256)

        def sign_response(backend: CryptoBackend) -> Callable[[], Any]:
            return lambda: backend.sign_statement(*response_statement)

        # Warm up all (key cache, imports, page cache for the xmlsec1 binary).
        for backend in (in_process, default, in_process):
            server.sec.crypto = backend
            for _ in range(3):
                build()
                build_with_pysaml2()

        # name → (backend for server.sec, function, seconds per round, minimum calls)
        cases: dict[str, tuple[CryptoBackend, Callable[[], Any], float, int]] = {
            "response in-process": (in_process, build, args.seconds, 20),
            "response xmlsec1": (default, build_with_pysaml2, args.seconds, 5),
            "response pysaml2 in-process": (in_process, build_with_pysaml2, args.seconds / 2, 20),
            "signature in-process": (in_process, sign_response(in_process), 0.3, 20),
            "signature xmlsec1": (default, sign_response(default), 0.3, 3),
            "rsa cryptography": (in_process, rsa_cryptography, 0.2, 50),
            "rsa libxmlsec1": (in_process, rsa_libxmlsec1, 0.2, 50),
        }
        load_before = os.getloadavg()[0]
        rounds: dict[str, list[float]] = {name: [] for name in cases}
        for number in range(args.rounds):
            print(f"round {number + 1}/{args.rounds} ...", file=sys.stderr)
            for name, (backend, function, seconds, minimum) in cases.items():
                server.sec.crypto = backend
                rounds[name].append(time_per_call(function, seconds, minimum))
        server.sec.crypto = in_process
        load_after = os.getloadavg()[0]

    figures = {name: Measured(values) for name, values in rounds.items()}
    fast, slow = figures["response in-process"], figures["response xmlsec1"]
    fast_signature, slow_signature = figures["signature in-process"], figures["signature xmlsec1"]
    through_pysaml2 = figures["response pysaml2 in-process"]
    rsa_floor = min(figures["rsa cryptography"].median, figures["rsa libxmlsec1"].median)
    ratio = slow.median / fast.median
    best_ratio = slow.best / fast.best

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.2f} ms"

    def row(label: str, left: str, right: str, factor: str = "") -> None:
        print(f"{label:36}{left:>14}{right:>18}{factor:>10}".rstrip())

    print()
    print("Signed SAML Responses (Response + Assertion signed, RSA-SHA256, SHA-256 digests)")
    print(
        f"for the same SP, person and request on one core (CPU {cpu}), "
        f"{args.rounds} alternating rounds"
    )
    print(
        f"pysaml2 {metadata.version('pysaml2')}; python xmlsec {metadata.version('xmlsec')} "
        f"(libxmlsec1 {in_process.version}); {xmlsec1_version()} at {XMLSEC1}"
    )
    print(f"load average (1 min) before/after: {load_before:.2f}/{load_after:.2f}")
    print()
    row("", "in-process", "xmlsec1 program", "ratio")
    row(
        "responses per second, median round",
        f"{1 / fast.median:.1f}",
        f"{1 / slow.median:.1f}",
        f"{ratio:.1f}×",
    )
    row(
        "responses per second, best round",
        f"{1 / fast.best:.1f}",
        f"{1 / slow.best:.1f}",
        f"{best_ratio:.1f}×",
    )
    row("time per response, median", ms(fast.median), ms(slow.median))
    row("  range over rounds", fast.spread, slow.spread)
    row(
        "time per signature (backend only)",
        ms(fast_signature.median),
        ms(slow_signature.median),
        f"{slow_signature.median / fast_signature.median:.1f}×",
    )
    print()
    print("For reference (medians)")
    print(
        f"  pysaml2's create_authn_response with the in-process backend: "
        f"{ms(through_pysaml2.median)} per Response ({slow.median / through_pysaml2.median:.1f}×)"
    )
    print(
        f"  one RSA-2048 PKCS#1 v1.5 SHA-256 signature: "
        f"{ms(figures['rsa cryptography'].median)} (cryptography), "
        f"{ms(figures['rsa libxmlsec1'].median)} (libxmlsec1's OpenSSL)"
    )
    print(
        f"  in-process Response {ms(fast.median)}, of which two RSA signatures "
        f"{ms(2 * rsa_floor)} ({2 * rsa_floor / fast.median:.0%})"
    )
    print()
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(f"Target ≥ {TARGET_RATIO:.0f}× responses per second (median rounds): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

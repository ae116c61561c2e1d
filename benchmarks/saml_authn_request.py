"""Receiving an AuthnRequest on one core: the IdP's reader against pysaml2's object layer.

    .venv/bin/python benchmarks/saml_authn_request.py [--rounds 7] [--seconds 0.5] [--cpu N]

Times what the SSO endpoint does with one AuthnRequest before any database work:
``SamlIdentityProvider.parse_authn_request`` (decode, parse, verify the signature against the
SP's metadata key, issuer, destination, ID, IssueInstant, version, ACS from metadata,
NameIDPolicy, RequestedAuthnContext), for an HTTP-POST request with an enveloped RSA-SHA256
signature and for an unsigned one, from an SP on a throwaway test PKI.

The baseline, in the same rounds: pysaml2's ``Server.parse_authn_request`` on the same decoded
XML (its object layer: parse, schema checks, signature through the same in-process backend),
which is only part of what the IdP's reader does. Rounds alternate; the median and the best
round of each are printed.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # tests.helpers.saml_sp: the independent pysaml2 SP
# pysaml2 imports CFB from its old place: silence that before pysaml2 is imported.
warnings.filterwarnings("ignore", message="CFB has been moved")

from saml2 import BINDING_HTTP_POST  # noqa: E402

from idp.saml.bindings import SAML_REQUEST, BindingMessage  # noqa: E402
from idp.saml.server import SamlIdentityProvider  # noqa: E402
from siths_testkit.pki import init_test_pki  # noqa: E402
from tests.helpers.saml_sp import in_process_idp  # noqa: E402

SIGNED_SP = "https://signed.example.test/metadata"
UNSIGNED_SP = "https://unsigned.example.test/metadata"


def time_per_call(function: Callable[[], Any], seconds: float, minimum: int = 20) -> float:
    """Seconds per call of ``function``, called for about ``seconds`` (at least ``minimum``)."""
    calls = 0
    started = time.perf_counter()
    while True:
        function()
        calls += 1
        elapsed = time.perf_counter() - started
        if calls >= minimum and elapsed >= seconds:
            return elapsed / calls


def post_request(provider: SamlIdentityProvider, sp: Any, *, sign: bool) -> BindingMessage:
    """An HTTP-POST AuthnRequest from ``sp`` as the IdP's binding reader hands it on."""
    sso, fields, _request_id = sp.post_login_form(sign=sign)
    assert sso.endswith("/saml/sso/post"), sso
    return BindingMessage(SAML_REQUEST, fields["SAMLRequest"], fields["RelayState"])


def cases(provider: SamlIdentityProvider, sps: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """name → one call; each is checked once before it is timed."""
    server = provider.server()
    found: dict[str, Callable[[], Any]] = {}
    for label, entity_id, sign in (("signed", SIGNED_SP, True), ("unsigned", UNSIGNED_SP, False)):
        message = post_request(provider, sps[entity_id], sign=sign)
        xml = base64.b64decode(message.text).decode("utf-8")
        info, _sp = provider.parse_authn_request(BINDING_HTTP_POST, message)
        assert info.sp_entity_id == entity_id
        parsed = server.parse_authn_request(xml, binding=None)
        assert (parsed.message.signature is not None) is sign
        found[f"{label}: IdP reader"] = lambda message=message: provider.parse_authn_request(
            BINDING_HTTP_POST, message
        )
        found[f"{label}: pysaml2 parse (baseline)"] = lambda xml=xml: server.parse_authn_request(
            xml, binding=None
        )
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (default 7)")
    parser.add_argument("--seconds", type=float, default=0.5, help="seconds per case and round")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last)")
    args = parser.parse_args()
    cpu = args.cpu if args.cpu is not None else sorted(os.sched_getaffinity(0))[-1]
    os.sched_setaffinity(0, {cpu})
    with tempfile.TemporaryDirectory(prefix="authn-request-bench-") as temporary:
        work = Path(temporary)
        print("Generating a throwaway test PKI ...", file=sys.stderr)
        pki = init_test_pki(work / "pki")
        provider, sps = in_process_idp(
            work,
            pki.directory,
            {SIGNED_SP: {"sign_requests": True}, UNSIGNED_SP: {"sign_requests": False}},
        )
        timed = cases(provider, sps)
        for function in timed.values():  # warm up: key cache, metadata snapshot
            for _ in range(5):
                function()
        rounds: dict[str, list[float]] = {name: [] for name in timed}
        for _round in range(args.rounds):
            for name, function in timed.items():
                rounds[name].append(time_per_call(function, args.seconds))
    print(f"AuthnRequest received per call, HTTP-POST, one core (cpu {cpu}), {args.rounds} rounds")
    print(f"{'case':36} {'median':>10} {'best':>10}")
    for name, seconds in rounds.items():
        print(
            f"{name:36} {statistics.median(seconds) * 1000:8.3f} ms {min(seconds) * 1000:8.3f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What encrypting the Assertion costs: signed Responses per second with and without it.

    .venv/bin/python benchmarks/saml_encryption.py [--rounds 7] [--seconds 0.6] [--cpu N]

Two SPs on a throwaway test PKI, alike but for one thing: the second publishes an RSA-2048
encryption key, so its Responses carry the signed Assertion as a ``saml:EncryptedAssertion``
(AES-256-GCM, RSA-OAEP, idp/saml/encryption.py). Both are built by what the IdP runs,
``SamlIdentityProvider.build_authn_response``, in alternating rounds pinned to one CPU; the
median and best round of each are reported.
"""
# ruff: noqa: E402

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="CFB has been moved")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # saml_signing's helpers

from saml2 import BINDING_HTTP_POST
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml_signing import SAMBI_ATTRIBUTES, XMLSEC1, pin_to_one_cpu, time_per_call

from idp.authn import Authentication
from idp.config import Settings
from idp.saml.server import AuthnRequestInfo, SamlIdentityProvider
from siths_testkit.pki import init_test_pki


def sp_metadata(entity_id: str, acs: str, encryption: tuple[Path, Path] | None) -> str:
    config = SPConfig()
    config.load(
        {
            "entityid": entity_id,
            "service": {
                "sp": {
                    "endpoints": {"assertion_consumer_service": [(acs, BINDING_HTTP_POST)]},
                    "want_assertions_signed": True,
                    "required_attributes": list(SAMBI_ATTRIBUTES),
                    "requested_attribute_name_format": (
                        "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
                    ),
                }
            },
            "xmlsec_binary": XMLSEC1,
            "allow_unknown_attributes": True,
            **(
                {
                    "encryption_keypairs": [
                        {"key_file": str(encryption[0]), "cert_file": str(encryption[1])}
                    ]
                }
                if encryption
                else {}
            ),
        }
    )
    xml = create_metadata_string(None, config=config, valid=24)
    return xml.decode("utf-8") if isinstance(xml, bytes) else xml


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.6)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    cpu = pin_to_one_cpu(args.cpu)
    with tempfile.TemporaryDirectory(prefix="saml-encryption-bench-") as temporary:
        work = Path(temporary)
        print("Generating a throwaway test PKI ...", file=sys.stderr)
        pki = init_test_pki(work / "pki")
        metadata_dir = work / "sp-metadata"
        metadata_dir.mkdir()
        # The test PKI's SP key pair (RSA-2048), published for encryption.
        keys = (pki.sp_signing_key, pki.sp_signing_cert)
        sps = {
            "signed": ("https://plain.example.test/sp", "https://plain.example.test/acs", None),
            "signed + encrypted": (
                "https://enc.example.test/sp",
                "https://enc.example.test/acs",
                keys,
            ),
        }
        for number, (entity_id, acs, encryption) in enumerate(sps.values()):
            (metadata_dir / f"sp-{number}.xml").write_text(
                sp_metadata(entity_id, acs, encryption), encoding="utf-8"
            )
        provider = SamlIdentityProvider(
            Settings(
                var_dir=work / "var",
                pki_dir=pki.directory,
                sp_metadata_dir=metadata_dir,
                base_url="https://idp.example.test",
            ),
            b"benchmark pairwise secret",
        )
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
        requests = {
            label: AuthnRequestInfo("_bench", entity_id, acs, "", False, False)
            for label, (entity_id, acs, _keys) in sps.items()
        }
        built = provider.build_authn_response(requests["signed + encrypted"], person).xml
        assert b"EncryptedAssertion" in built, "the second SP must get an encrypted Assertion"
        rounds: dict[str, list[float]] = {label: [] for label in sps}
        for number in range(args.rounds):
            print(f"round {number + 1}/{args.rounds} ...", file=sys.stderr)
            for label, request in requests.items():
                rounds[label].append(
                    time_per_call(
                        lambda request=request: provider.build_authn_response(request, person),
                        args.seconds,
                        20,
                    )
                )
    print(f"\nSAML Responses on CPU {cpu}, {args.rounds} alternating rounds")
    print(f"{'':24}{'median':>12}{'best':>12}{'Responses/s':>14}")
    for label, measured in rounds.items():
        median = statistics.median(measured)
        print(
            f"{label:24}{median * 1000:>9.2f} ms{min(measured) * 1000:>9.2f} ms{1 / median:>14.1f}"
        )
    encrypted, signed = rounds["signed + encrypted"], rounds["signed"]
    by_median = statistics.median(encrypted) - statistics.median(signed)
    by_best = min(encrypted) - min(signed)
    # On a loaded machine the medians move by more than encryption costs: the best rounds,
    # closest to an idle core, are the better estimate then.
    print(
        f"encryption adds {by_best * 1000:.2f} ms a Response (best rounds), "
        f"{by_median * 1000:.2f} ms (medians)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

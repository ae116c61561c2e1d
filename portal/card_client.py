"""The recipient's card software for step 6 (a stand-in, as :mod:`siths_testkit.app_simulator` is
for the SITHS eID app): it talks to the portal over HTTPS and to the card — a SoftHSM2 token whose
label is the card number — through PKCS#11, and never sees a private key.

:func:`enrol` asks for a challenge, signs it with the card's existing certificate's key,
generates a new key pair on the card, signs the same bytes with the new key, sends both proofs,
and stores the returned Göteborg certificate on the card beside its key. If the portal refuses,
the new key pair is removed again and :class:`EnrolmentRefused` says why.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from portal.config import GOTEBORGS_STAD
from siths_testkit.app_simulator.token import SoftHsmCard, sign_with_key
from siths_testkit.pki.softhsm import resolve_config
from siths_testkit.pki.tokens import (
    CardKeyType,
    destroy_key_pair,
    generate_key_pair,
    store_certificate,
    token_objects,
)


class EnrolmentRefused(Exception):
    """The portal said no: ``reason`` is its code, ``status_code`` the HTTP status."""

    def __init__(self, status_code: int, reason: str, detail: str, text: str) -> None:
        super().__init__(f"{reason} ({status_code}): {detail} — {text}")
        self.status_code = status_code
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Enrolled:
    hsa_id: str
    certificate: x509.Certificate


def _answer(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    if response.status_code != 200:
        raise EnrolmentRefused(
            response.status_code, body.get("reason", ""), body.get("detail", ""), body.get("sv", "")
        )
    return body


def enrol(
    link: str,
    *,
    token_label: str,
    pin: str,
    config: Path | None = None,
    ca_file: Path | None = None,
    existing_hsa_id: str | None = None,
    key_type: CardKeyType = "rsa",
) -> Enrolled:
    """Fetch the Göteborg certificate of the order behind ``link`` onto the card.

    ``existing_hsa_id`` picks the card's own certificate; by default it is the card's one
    certificate that is not Göteborgs Stad's.
    """
    config = resolve_config(config)
    on_card = sorted(
        {obj.label for obj in token_objects(config, token_label, pin) if obj.kind == "certificate"}
    )
    if existing_hsa_id is None:
        existing_hsa_id = _own_hsa_id(on_card)
    card = SoftHsmCard(token_label, pin, config=config, hsa_id=existing_hsa_id)
    verify = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    with httpx.Client(verify=verify, timeout=30, follow_redirects=False) as http:
        challenge = _answer(http.post(f"{link}/utmaning"))
        data = base64.b64decode(challenge["dataToSign"])
        algorithm, signature = card.sign(data)
        public_key, key_id = generate_key_pair(
            config, token_label, pin, challenge["hsaId"], key_type
        )
        try:
            new_algorithm, new_signature = sign_with_key(
                config, token_label, pin, key_id, key_type, data
            )
            proofs = {
                "challenge": challenge["challenge"],
                "cardNumber": token_label,
                "certificate": card.certificate_pem(),
                "algorithm": algorithm,
                "signature": base64.b64encode(signature).decode("ascii"),
                "cardHsaIds": on_card,
                **_new_key_proof(public_key, new_algorithm, new_signature),
            }
            answer = _answer(http.post(f"{link}/certifikat", json=proofs))
        except BaseException:
            destroy_key_pair(config, token_label, pin, key_id)
            raise
    certificate = x509.load_pem_x509_certificate(answer["certificate"].encode("ascii"))
    store_certificate(config, token_label, pin, certificate, answer["hsaId"], key_id)
    return Enrolled(answer["hsaId"], certificate)


def _own_hsa_id(on_card: list[str]) -> str | None:
    """The card's own organisation's certificate: the one that is not Göteborgs Stad's (None
    unless exactly one is)."""
    own = [label for label in on_card if not label.startswith(f"SE{GOTEBORGS_STAD}-")]
    return own[0] if len(own) == 1 else None


def _new_key_proof(
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, algorithm: str, signature: bytes
) -> dict[str, str]:
    """The new key's part of the request: its public key and its signature of the same data."""
    return {
        "publicKey": public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii"),
        "newKeyAlgorithm": algorithm,
        "newKeySignature": base64.b64encode(signature).decode("ascii"),
    }

"""The card in the app's reader: a SoftHSM2 token opened with the user's PIN.

Signing happens on the token through PKCS#11 and nowhere else: this module never sees a private
key, only its ``CKA_ID``. RSA keys sign with ``CKM_SHA256_RSA_PKCS`` (the token hashes); SoftHSM
has no ``CKM_ECDSA_SHA256``, so EC keys sign a SHA-256 digest with raw ``CKM_ECDSA``, and the
token's ``r‖s`` is re-encoded as the DER ``ECDSA-Sig-Value`` that verifiers expect. The
``_on_token_*`` functions run in the PKCS#11 worker process (see :mod:`siths_testkit.pki.softhsm`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from siths_testkit.app_simulator.protocol import ECDSA_SHA256, RSA_PKCS1_SHA256
from siths_testkit.pki.softhsm import TokenError, resolve_config, run_on_token

__all__ = ["Card", "SoftHsmCard", "der_from_raw_ecdsa", "sign_with_key"]


class Card(Protocol):
    """What the app needs of a card: its certificate and signatures by its key."""

    def certificate(self) -> x509.Certificate: ...

    def sign(self, data: bytes) -> tuple[str, bytes]: ...


def der_from_raw_ecdsa(raw: bytes) -> bytes:
    """DER ``SEQUENCE {r, s}`` from PKCS#11's ``r‖s`` (two big-endian halves of equal size)."""
    if not raw or len(raw) % 2:
        raise ValueError(f"an r‖s ECDSA signature has an even, non-zero length, not {len(raw)}")
    half = len(raw) // 2
    return encode_dss_signature(
        int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    )


class SoftHsmCard:
    """A card on SoftHSM2 token ``token_label``, unlocked with ``pin``.

    Opening checks the PIN at once, as a card does when it is unlocked: a wrong PIN raises
    :class:`siths_testkit.pki.softhsm.WrongPin`, a missing token
    :class:`~siths_testkit.pki.softhsm.TokenNotFound`. ``config`` is the SoftHSM2 configuration
    (see :func:`siths_testkit.pki.softhsm.resolve_config`).
    A token may carry several card certificates (one per HSA-ID); ``hsa_id`` picks one, and
    may be left out when there is only one.

    The PIN is kept for the card's lifetime, as the app keeps the card unlocked for a login:
    every :meth:`sign` logs in again in a fresh session. Safe to use from several threads.
    """

    def __init__(
        self,
        token_label: str,
        pin: str,
        *,
        config: Path | None = None,
        hsa_id: str | None = None,
    ) -> None:
        self._config = resolve_config(config)
        self._label = token_label
        self._pin = pin
        self._key_id, self._key_type, der = run_on_token(
            self._config, token_label, pin, _on_token_find_card, hsa_id
        )
        self._certificate = x509.load_der_x509_certificate(der)

    @property
    def token_label(self) -> str:
        return self._label

    @property
    def hsa_id(self) -> str | None:
        """The certificate's subject serialNumber (where SITHS puts the HSA-ID), if any."""
        names = self._certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
        return str(names[0].value) if names else None

    def certificate(self) -> x509.Certificate:
        """The card's HSA-ID authentication certificate, as stored on the token."""
        return self._certificate

    def certificate_pem(self) -> str:
        return self._certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def sign(self, data: bytes) -> tuple[str, bytes]:
        """Sign ``data`` with the card's private key on the token.

        Returns the API's algorithm name (``rsa-pkcs1-sha256`` or ``ecdsa-sha256``) and the
        signature (PKCS#1 v1.5 bytes, or DER for ECDSA). Raises ``WrongPin`` if the PIN has
        been changed meanwhile, ``TokenError`` for other token trouble.
        """
        return sign_with_key(
            self._config, self._label, self._pin, self._key_id, self._key_type, data
        )

    def __repr__(self) -> str:
        return f"SoftHsmCard({self._label!r}, {self._certificate.subject.rfc4514_string()!r})"


def sign_with_key(
    config: Path, token_label: str, pin: str, key_id: bytes, key_type: str, data: bytes
) -> tuple[str, bytes]:
    """Sign ``data`` on the token with the private key whose ``CKA_ID`` is ``key_id`` (of
    ``key_type`` ``rsa`` or ``ec``), also one that has no certificate yet (a key pair just
    generated for a certificate request). Returns what :meth:`SoftHsmCard.sign` returns."""
    if key_type == "rsa":
        return RSA_PKCS1_SHA256, run_on_token(
            config, token_label, pin, _on_token_sign_rsa, key_id, data
        )
    raw = run_on_token(
        config, token_label, pin, _on_token_sign_ecdsa_digest, key_id, hashlib.sha256(data).digest()
    )
    return ECDSA_SHA256, der_from_raw_ecdsa(raw)


def _on_token_find_card(session: Any, hsa_id: str | None) -> tuple[bytes, str, bytes]:
    """(CKA_ID, "rsa" or "ec", certificate DER) of the one card certificate wanted."""
    wanted: dict[Any, Any] = {Attribute.CLASS: ObjectClass.CERTIFICATE}
    if hsa_id:
        wanted[Attribute.LABEL] = hsa_id
    found = [
        (obj[Attribute.LABEL], obj[Attribute.ID], obj[Attribute.VALUE])
        for obj in session.get_objects(wanted)
    ]
    if not found:
        raise TokenError("the card holds no certificate" + (f" for {hsa_id}" if hsa_id else ""))
    if len(found) > 1:
        labels = ", ".join(sorted(label for label, _key_id, _der in found))
        raise TokenError(f"the card holds several certificates ({labels}); choose one")
    label, key_id, der = found[0]
    keys = list(
        session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: key_id})
    )
    if len(keys) != 1:
        raise TokenError(f"the card has no private key for {label}")
    key_type = keys[0][Attribute.KEY_TYPE]
    if key_type not in (KeyType.RSA, KeyType.EC):
        raise TokenError(f"the card's key is of an unsupported type ({key_type!r})")
    return key_id, "rsa" if key_type == KeyType.RSA else "ec", der


def _on_token_sign_rsa(session: Any, key_id: bytes, data: bytes) -> bytes:
    key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=key_id)
    return key.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)


def _on_token_sign_ecdsa_digest(session: Any, key_id: bytes, digest: bytes) -> bytes:
    key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=key_id)
    return key.sign(digest, mechanism=Mechanism.ECDSA)

"""TEST cards on SoftHSM2 tokens for the tests: one token per card, in a directory of the test's.

Each card is made the way ``idp card issue --token`` makes one (key pair generated on the
token, certificate from the test PKI stored beside it) and opened the way the app opens one.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from siths_testkit.app_simulator import SoftHsmCard
from siths_testkit.pki import TestPki
from siths_testkit.pki.cards import load_issuer
from siths_testkit.pki.softhsm import create_token, write_config
from siths_testkit.pki.tokens import CardKeyType, issue_card_on_token

PIN = "246810"
SO_PIN = "13579135"


class TokenLab:
    """Makes tokens with cards under ``directory`` (its own ``softhsm2.conf``)."""

    def __init__(self, pki: TestPki, directory: Path) -> None:
        self.pki = pki
        self.config = write_config(directory)
        # Loaded once: reading a PEM RSA key costs tens of milliseconds.
        self.issuer = load_issuer(pki.hsa_ca_cert, pki.hsa_ca_key)
        self.forged_issuer = load_issuer(pki.forged_hsa_ca_cert, pki.forged_hsa_ca_key)

    def card(
        self,
        label: str,
        hsa_id: str,
        given_name: str = "Test",
        surname: str = "Person",
        *,
        key_type: CardKeyType = "rsa",
        forged: bool = False,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> SoftHsmCard:
        """A new token ``label`` holding one card, opened with the right PIN.

        ``forged``: issued by the forged HSA-id CA (same name, other key), so the IdP must
        refuse it; ``not_before``/``not_after`` in the past make an expired card.
        """
        create_token(self.config, label, pin=PIN, so_pin=SO_PIN)
        issue_card_on_token(
            self.pki,
            self.config,
            label,
            PIN,
            hsa_id=hsa_id,
            given_name=given_name,
            surname=surname,
            key_type=key_type,
            not_before=not_before,
            not_after=not_after,
            issuer=self.forged_issuer if forged else self.issuer,
        )
        return self.open(label)

    def open(self, label: str, pin: str = PIN) -> SoftHsmCard:
        """Open token ``label`` as the app does (``WrongPin`` for a wrong ``pin``)."""
        return SoftHsmCard(label, pin, config=self.config)

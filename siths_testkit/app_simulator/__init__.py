"""A simulated SITHS eID app for "SITHS eID på annan enhet", with its card on a SoftHSM2 token.

- :class:`SithsEidApp` (:mod:`.client`) speaks the IdP's app API (``/app-api/v1``) over HTTPS;
- :class:`SoftHsmCard` (:mod:`.token`) is the card: a PKCS#11 token opened with a PIN, which
  signs on the token and never shows its private key;
- :mod:`.protocol` holds the wire names and answers; :mod:`.cli` is ``idp app login``.

TEST tooling: it talks to a real IdP over real sockets, and can misbehave on purpose.
"""

from siths_testkit.app_simulator.client import SithsEidApp
from siths_testkit.app_simulator.protocol import (
    AppApiError,
    OrderState,
    ScanResult,
    SignResult,
    Submission,
)
from siths_testkit.app_simulator.token import Card, SoftHsmCard

__all__ = [
    "AppApiError",
    "Card",
    "OrderState",
    "ScanResult",
    "SignResult",
    "SithsEidApp",
    "SoftHsmCard",
    "Submission",
]

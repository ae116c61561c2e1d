"""The app API as the app sees it: paths, algorithm names, and what answers carry.

Written from the API's description (``/app-api/v1`` in the IdP's OpenAPI schema), not imported
from the IdP's code, so a change on the server that breaks the wire format breaks the app too.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

API_PREFIX = "/app-api/v1"
RSA_PKCS1_SHA256 = "rsa-pkcs1-sha256"
ECDSA_SHA256 = "ecdsa-sha256"


class AppApiError(Exception):
    """The IdP refused a request: ``error_code`` is the API's stable code (``staleQrCode``…).

    ``status_code`` is the HTTP status (4xx); ``details`` the server's explanation.
    """

    def __init__(self, status_code: int, error_code: str, details: str) -> None:
        super().__init__(f"{error_code} ({status_code}): {details}")
        self.status_code = status_code
        self.error_code = error_code
        self.details = details


@dataclass(frozen=True)
class ScanResult:
    """What ``/scan`` hands the app that claimed an order.

    ``sign_token`` proves in ``/sign`` and ``/cancel`` that this app scanned; ``data_to_sign``
    are the exact bytes to sign (already base64-decoded); ``user_visible_data`` is the text the
    app shows before asking for the PIN.
    """

    order_ref: str
    sign_token: str
    data_to_sign: bytes
    user_visible_data: str
    signature_algorithms: tuple[str, ...]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ScanResult:
        return cls(
            order_ref=body["orderRef"],
            sign_token=body["signToken"],
            data_to_sign=base64.b64decode(body["dataToSign"], validate=True),
            user_visible_data=body["userVisibleData"],
            signature_algorithms=tuple(body["signatureAlgorithms"]),
        )


@dataclass(frozen=True)
class Submission:
    """A signature as sent to ``/sign``: algorithm, signature bytes and PEM certificates.

    Kept so that a test can replay it into another order.
    """

    algorithm: str
    signature: bytes
    certificates: tuple[str, ...]

    def to_json(self, scan: ScanResult) -> dict[str, Any]:
        return {
            "orderRef": scan.order_ref,
            "signToken": scan.sign_token,
            "signatureAlgorithm": self.algorithm,
            "signature": base64.b64encode(self.signature).decode("ascii"),
            "certificates": list(self.certificates),
        }


@dataclass(frozen=True)
class OrderState:
    """``{orderRef, status, hintCode}`` as ``/sign`` and ``/cancel`` answer."""

    order_ref: str
    status: str
    hint_code: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> OrderState:
        return cls(
            order_ref=body["orderRef"], status=body["status"], hint_code=body.get("hintCode", "")
        )


@dataclass(frozen=True)
class SignResult:
    """The order's state after a successful ``/sign``, and what was sent to get there."""

    state: OrderState
    submission: Submission

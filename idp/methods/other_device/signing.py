"""The app's signed order: proof of possession, then the login's certificate authentication.

Plain Python, called by the app API's ``/sign`` in one transaction. A refused signature or
certificate fails the order (the app and the QR page are told ``certificateErr``) and is
audited in that same transaction, so the refusal is *returned*, not raised: raising would roll
the failed order back.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from idp.audit import record_audit_event
from idp.db import Transaction
from idp.login.authenticate import AuthenticationResult, CertificateAuthentication
from idp.login.errors import LoginFailed
from idp.login.pending import PendingLoginRecord
from idp.methods.other_device.orders import (
    OrderRecord,
    OrderRefused,
    complete_order,
    fail_order,
    login_of_order,
    now_utc,
    order_for_app,
)
from idp.methods.other_device.signature import SIGNATURE_ALGORITHMS, signature_is_valid
from idp.siths.validation import CertificateRejected, load_certificate

METHOD = "siths-other-device"


@dataclass(frozen=True)
class SignedOrder:
    """What the app sent to ``/sign``: the signature over the order's ``dataToSign`` and the
    card's certificate first, then any intermediates (PEM)."""

    order_ref: str
    sign_token: str
    algorithm: str
    signature: str
    certificates: Sequence[str]


@dataclass(frozen=True)
class SignOutcome:
    """``refused`` is None when the order completed and the login is authenticated."""

    order_ref: str
    refused: OrderRefused | None


def complete_signed_order(
    session: Transaction, authenticator: CertificateAuthentication, signed: SignedOrder
) -> SignOutcome:
    """Complete the order once if the signature and the certificate hold, else fail it.

    Raises :class:`OrderRefused` (nothing changed, nothing audited here) when the order is
    unknown, not this app's or no longer open."""
    order = order_for_app(session, signed.order_ref, signed.sign_token, now_utc())
    pending = login_of_order(session, order)
    refused = _malformed(signed)
    hsa_id = ""
    if refused is None:
        authenticated: list[AuthenticationResult] = []

        def complete(session: Transaction, result: AuthenticationResult) -> None:
            authenticated.append(result)
            complete_order(session, order)

        try:
            _authenticate(session, authenticator, signed, order, pending, complete)
            return SignOutcome(order.order_ref, None)
        except (CertificateRejected, LoginFailed) as exc:
            hsa_id = exc.hsa_id
            refused = OrderRefused("certificateErr", f"{exc.reason}: {exc.detail}")
            fail_order(session, order, "certificateErr", exc.reason)
        except OrderRefused as exc:
            hsa_id = authenticated[0].certificate.hsa_id.value if authenticated else ""
            refused = exc
            fail_order(session, order, "certificateErr", "bad_signature")
    else:
        fail_order(session, order, "certificateErr", "bad_signature")
    record_audit_event(
        session,
        "login.method",
        outcome="failure",
        reason=order.failure_reason or refused.reason,
        hsa_id=hsa_id,
        client_id=pending.client_id if pending else "",
        method=METHOD,
        detail=f"order {order.order_ref}: {refused.detail}",
    )
    return SignOutcome(order.order_ref, refused)


def _authenticate(
    session: Transaction,
    authenticator: CertificateAuthentication,
    signed: SignedOrder,
    order: OrderRecord,
    pending: PendingLoginRecord | None,
    complete: Callable[[Transaction, AuthenticationResult], None],
) -> None:
    # UTF-8, not ASCII: a PEM with other characters is unreadable, not a crash.
    leaf = load_certificate(signed.certificates[0].encode("utf-8"))
    intermediates = [load_certificate(pem.encode("utf-8")) for pem in signed.certificates[1:]]
    # Proof of possession first: the card's key signed exactly this order's data. A key no
    # card may have is refused here (weak_key), before it verifies.
    if not signature_is_valid(
        leaf,
        signed.algorithm,
        base64.b64decode(signed.signature),
        base64.b64decode(order.data_to_sign),
    ):
        raise OrderRefused("invalidSignature", "the signature does not verify")
    authenticator.authenticate_certificate(
        session,
        pending,
        leaf,
        intermediates,
        METHOD,
        evidence=f"order {order.order_ref}",
        then=complete,
    )


def _malformed(signed: SignedOrder) -> OrderRefused | None:
    if signed.algorithm not in SIGNATURE_ALGORITHMS:
        return OrderRefused("invalidParameters", f"unknown algorithm {signed.algorithm}")
    try:
        base64.b64decode(signed.signature, validate=True)
    except (binascii.Error, ValueError):
        return OrderRefused("invalidParameters", "signature is not base64")
    return None

"""The SITHS eID app's API, versioned under ``/app-api/v1`` and described in the OpenAPI schema.

1. ``POST /scan`` with the scanned QR code (or the autoStartToken): the order is claimed by this
   app, which gets ``dataToSign``, the text to show the user and a ``signToken``.
2. ``POST /sign`` with the signature over exactly ``dataToSign`` and the card's certificate (and
   any intermediates): the IdP verifies both and completes the order once.
3. ``POST /cancel``: the user cancelled in the app.

Errors are ``{"errorCode": …, "details": …}`` with a 4xx status.
"""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from idp.audit import record_audit_event, record_audit_event_in_thread
from idp.login.errors import LoginFailed, LoginReason
from idp.login.identify import authentications_for_certificate
from idp.login.pending import PendingState, ensure_unexpired, mark_authenticated
from idp.methods.other_device.orders import (
    OrderRefused,
    claim_by_auto_start,
    claim_by_qr,
    complete_order,
    fail_order,
    now_utc,
    order_for_app,
)
from idp.methods.other_device.signature import SIGNATURE_ALGORITHMS, signature_is_valid
from idp.services import Services, services_of
from idp.siths.revocation import RevocationDecision, audit_note, audit_reason
from idp.siths.validation import CertificateRejected, load_certificate
from idp.store.models import PendingLogin

METHOD = "siths-other-device"
API_PREFIX = "/app-api/v1"
router = APIRouter(prefix=API_PREFIX, tags=["SITHS eID app API v1"])


class ScanRequest(BaseModel):
    qrCode: str | None = Field(None, max_length=300, description="The QR code's content")
    autoStartToken: str | None = Field(
        None, max_length=64, description="For the app on this device"
    )


class ScanResponse(BaseModel):
    orderRef: str
    signToken: str = Field(description="Proves in /sign and /cancel that this app scanned")
    dataToSign: str = Field(description="Base64; sign exactly these bytes with the card's key")
    userVisibleData: str
    signatureAlgorithms: list[str]


class SignRequest(BaseModel):
    orderRef: str = Field(max_length=64)
    signToken: str = Field(max_length=100)
    signatureAlgorithm: str = Field(max_length=32, description="rsa-pkcs1-sha256 or ecdsa-sha256")
    signature: str = Field(max_length=4096, description="Base64")
    certificates: list[str] = Field(
        min_length=1, max_length=4, description="PEM; the card's certificate first"
    )


class CancelRequest(BaseModel):
    orderRef: str = Field(max_length=64)
    signToken: str = Field(max_length=100)


class OrderStatus(BaseModel):
    orderRef: str
    status: str
    hintCode: str


class ApiError(BaseModel):
    errorCode: str
    details: str


ERRORS = {
    400: {"model": ApiError},
    403: {"model": ApiError},
    404: {"model": ApiError},
    409: {"model": ApiError},
    410: {"model": ApiError},
}


def _error(exc: OrderRefused) -> JSONResponse:
    return JSONResponse(
        {"errorCode": exc.reason, "details": exc.detail}, status_code=exc.status_code
    )


@router.post("/scan", response_model=ScanResponse, responses=ERRORS)
async def scan(request: Request, body: ScanRequest) -> ScanResponse | JSONResponse:
    """Claim the order whose QR code (or autoStartToken) the app has."""
    services = services_of(request)

    def claim() -> ScanResponse:
        with services.database.session() as session:
            now = now_utc()
            if body.qrCode:
                order, sign_token = claim_by_qr(session, body.qrCode, now)
            elif body.autoStartToken:
                order, sign_token = claim_by_auto_start(session, body.autoStartToken, now)
            else:
                raise OrderRefused("invalidParameters", "give qrCode or autoStartToken")
            return ScanResponse(
                orderRef=order.order_ref,
                signToken=sign_token,
                dataToSign=order.data_to_sign,
                userVisibleData=order.user_visible_data,
                signatureAlgorithms=list(SIGNATURE_ALGORITHMS),
            )

    try:
        return await run_in_threadpool(claim)
    except OrderRefused as exc:
        await _audit(services, "app.scan", "rejected", exc.reason, exc.detail)
        return _error(exc)


@router.post("/sign", response_model=OrderStatus, responses=ERRORS)
async def sign(request: Request, body: SignRequest) -> OrderStatus | JSONResponse:
    """Verify the signature and the certificate; complete the order once."""
    services = services_of(request)
    settings = services.settings

    def verify_and_complete() -> tuple[OrderStatus | None, OrderRefused | None]:
        with services.database.session() as session:
            now = now_utc()
            order = order_for_app(session, body.orderRef, body.signToken, now)
            pending = session.get(PendingLogin, order.pending_login_id)
            refused = _check(body, order.data_to_sign)
            hsa_id = ""
            revocation: RevocationDecision | None = None
            if refused is None:
                try:
                    # UTF-8, not ASCII: a PEM with other characters is unreadable, not a crash.
                    leaf = load_certificate(body.certificates[0].encode("utf-8"))
                    intermediates = [
                        load_certificate(pem.encode("utf-8")) for pem in body.certificates[1:]
                    ]
                    # Proof of possession first: the card's key signed exactly this order's data.
                    # A key no card may have is refused here (weak_key), before it verifies.
                    if not signature_is_valid(
                        leaf,
                        body.signatureAlgorithm,
                        base64.b64decode(body.signature),
                        base64.b64decode(order.data_to_sign),
                    ):
                        raise OrderRefused("invalidSignature", "the signature does not verify")
                    validated = services.validator.validate(leaf, intermediates)
                    hsa_id, revocation = validated.hsa_id.value, validated.revocation
                    if pending is None or pending.state != PendingState.PENDING:
                        raise LoginFailed(
                            LoginReason.LOGIN_WRONG_STEP, "the login is no longer waiting"
                        )
                    ensure_unexpired(pending)
                    authentications = authentications_for_certificate(
                        session,
                        validated,
                        method=METHOD,
                        accepted_organisations=settings.accepted_organisations,
                    )
                    mark_authenticated(session, pending, authentications)
                    complete_order(session, order)
                except CertificateRejected as exc:
                    hsa_id = hsa_id or exc.hsa_id
                    refused = OrderRefused("certificateErr", f"{exc.reason}: {exc.detail}")
                    fail_order(session, order, "certificateErr", exc.reason)
                except LoginFailed as exc:
                    refused = OrderRefused("certificateErr", f"{exc.reason}: {exc.detail}")
                    fail_order(session, order, "certificateErr", exc.reason)
                except OrderRefused as exc:
                    refused = exc
                    fail_order(session, order, "certificateErr", "bad_signature")
            else:
                fail_order(session, order, "certificateErr", "bad_signature")
            record_audit_event(
                session,
                "login.method",
                outcome="success" if refused is None else "failure",
                reason=audit_reason(revocation)
                if refused is None
                else (order.failure_reason or refused.reason),
                hsa_id=hsa_id,
                client_id=pending.client_id if pending else "",
                method=METHOD,
                detail=f"order {order.order_ref}"
                + (f": {refused.detail}" if refused else f"; {audit_note(revocation)}"),
            )
            if refused is not None:
                return None, refused
            return OrderStatus(orderRef=order.order_ref, status="complete", hintCode=""), None

    try:
        status, refused = await run_in_threadpool(verify_and_complete)
    except OrderRefused as exc:
        await _audit(services, "app.sign", "rejected", exc.reason, exc.detail)
        return _error(exc)
    if refused is not None:
        return _error(refused)
    assert status is not None
    return status


def _check(body: SignRequest, data_to_sign: str) -> OrderRefused | None:
    if body.signatureAlgorithm not in SIGNATURE_ALGORITHMS:
        return OrderRefused("invalidParameters", f"unknown algorithm {body.signatureAlgorithm}")
    try:
        base64.b64decode(body.signature, validate=True)
    except (binascii.Error, ValueError):
        return OrderRefused("invalidParameters", "signature is not base64")
    return None


@router.post("/cancel", response_model=OrderStatus, responses=ERRORS)
async def cancel(request: Request, body: CancelRequest) -> OrderStatus | JSONResponse:
    """The user cancelled in the app."""
    services = services_of(request)

    def cancel_order() -> OrderStatus:
        with services.database.session() as session:
            order = order_for_app(session, body.orderRef, body.signToken, now_utc())
            fail_order(session, order, "userCancel", "user_cancel")
            record_audit_event(
                session,
                "login.method",
                outcome="failure",
                reason="user_cancel",
                method=METHOD,
                detail=f"order {order.order_ref}",
            )
            return OrderStatus(
                orderRef=order.order_ref, status=order.status, hintCode=order.hint_code
            )

    try:
        return await run_in_threadpool(cancel_order)
    except OrderRefused as exc:
        return _error(exc)


async def _audit(services: Services, event: str, outcome: str, reason: str, detail: str) -> None:
    await record_audit_event_in_thread(
        services.database, event, outcome=outcome, reason=reason, method=METHOD, detail=detail
    )

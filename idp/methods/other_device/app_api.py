"""The SITHS eID app's API, versioned under ``/app-api/v1`` and described in the OpenAPI schema.

1. ``POST /scan`` with the scanned QR code (or the autoStartToken): the order is claimed by this
   app, which gets ``dataToSign``, the text to show the user and a ``signToken``.
2. ``POST /sign`` with the signature over exactly ``dataToSign`` and the card's certificate (and
   any intermediates): the IdP verifies both and completes the order once.
3. ``POST /cancel``: the user cancelled in the app.

Errors are ``{"errorCode": …, "details": …}`` with a 4xx status.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from idp.audit import record_audit_event, record_audit_event_in_thread
from idp.methods.other_device.orders import (
    OrderRefused,
    claim_by_auto_start,
    claim_by_qr,
    fail_order,
    now_utc,
    order_for_app,
)
from idp.methods.other_device.signature import SIGNATURE_ALGORITHMS
from idp.methods.other_device.signing import (
    METHOD,
    SignedOrder,
    SignOutcome,
    complete_signed_order,
)
from idp.services import Services, services_of
from idp.web.json_response import JsonResponse

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


def _error(exc: OrderRefused) -> JsonResponse:
    return JsonResponse(
        {"errorCode": exc.reason, "details": exc.detail}, status_code=exc.status_code
    )


@router.post("/scan", response_model=ScanResponse, responses=ERRORS)
async def scan(request: Request, body: ScanRequest) -> ScanResponse | JsonResponse:
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
async def sign(request: Request, body: SignRequest) -> OrderStatus | JsonResponse:
    """Verify the signature and the certificate; complete the order once."""
    services = services_of(request)
    signed = SignedOrder(
        body.orderRef, body.signToken, body.signatureAlgorithm, body.signature, body.certificates
    )

    def verify_and_complete() -> SignOutcome:
        with services.database.session() as session:
            return complete_signed_order(session, services.authenticator, signed)

    try:
        outcome = await run_in_threadpool(verify_and_complete)
    except OrderRefused as exc:
        await _audit(services, "app.sign", "rejected", exc.reason, exc.detail)
        return _error(exc)
    if outcome.refused is not None:
        return _error(outcome.refused)
    return OrderStatus(orderRef=outcome.order_ref, status="complete", hintCode="")


@router.post("/cancel", response_model=OrderStatus, responses=ERRORS)
async def cancel(request: Request, body: CancelRequest) -> OrderStatus | JsonResponse:
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

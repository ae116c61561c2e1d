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
from starlette.responses import JSONResponse

from idp.methods.other_device.app_steps import AppOrderSteps, OrderState
from idp.methods.other_device.orders import OrderRefused
from idp.methods.other_device.signature import SIGNATURE_ALGORITHMS
from idp.methods.other_device.signing import SignedOrder

API_PREFIX = "/app-api/v1"


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


def _status(state: OrderState) -> OrderStatus:
    return OrderStatus(orderRef=state.order_ref, status=state.status, hintCode=state.hint_code)


def app_api_router(steps: AppOrderSteps) -> APIRouter:
    """The API's endpoints, calling ``steps`` (built once at start-up)."""
    router = APIRouter(prefix=API_PREFIX, tags=["SITHS eID app API v1"])

    @router.post("/scan", response_model=ScanResponse, responses=ERRORS)
    async def scan(body: ScanRequest) -> ScanResponse | JSONResponse:
        """Claim the order whose QR code (or autoStartToken) the app has."""
        try:
            scanned = await run_in_threadpool(steps.scan, body.qrCode, body.autoStartToken)
        except OrderRefused as exc:
            return _error(exc)
        return ScanResponse(
            orderRef=scanned.order_ref,
            signToken=scanned.sign_token,
            dataToSign=scanned.data_to_sign,
            userVisibleData=scanned.user_visible_data,
            signatureAlgorithms=list(SIGNATURE_ALGORITHMS),
        )

    @router.post("/sign", response_model=OrderStatus, responses=ERRORS)
    async def sign(body: SignRequest) -> OrderStatus | JSONResponse:
        """Verify the signature and the certificate; complete the order once."""
        signed = SignedOrder(
            body.orderRef,
            body.signToken,
            body.signatureAlgorithm,
            body.signature,
            body.certificates,
        )
        try:
            return _status(await run_in_threadpool(steps.sign, signed))
        except OrderRefused as exc:
            return _error(exc)

    @router.post("/cancel", response_model=OrderStatus, responses=ERRORS)
    async def cancel(body: CancelRequest) -> OrderStatus | JSONResponse:
        """The user cancelled in the app."""
        try:
            return _status(await run_in_threadpool(steps.cancel, body.orderRef, body.signToken))
        except OrderRefused as exc:
            return _error(exc)

    return router

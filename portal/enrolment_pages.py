"""Step 6 over HTTP: the recipient's link page and the card software's two JSON calls.

``GET /hamta/<link>`` shows what will be issued and how; ``POST /hamta/<link>/utmaning`` gives
a challenge; ``POST /hamta/<link>/certifikat`` sends the proofs and gets the certificate (see
:mod:`portal.enrolment`). A refusal is ``{"reason", "detail", "sv", "en"}`` with its HTTP
status; it is audited with the reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from portal import audit, enrolment, idp_directory
from portal.enrolment import Submission
from portal.refusals import Refused
from portal.web import database_of, refusal_page, render, settings_of

logger = logging.getLogger("portal")
router = APIRouter(prefix="/hamta")
MAX_BODY_BYTES = 64 * 1024


def _refusal(refused: Refused) -> JSONResponse:
    return JSONResponse(refused.as_dict(), status_code=refused.words.status_code)


@router.get("/{token}")
async def link_page(request: Request, token: str) -> Response:
    def load() -> Any:
        with database_of(request).session() as session:
            return enrolment.order_for_link(session, token)

    try:
        order = await run_in_threadpool(load)
    except Refused as refused:
        return refusal_page(request, refused)
    link = f"{settings_of(request).base_url}/hamta/{token}"
    return render(request, "enrol.html", {"order": order, "link": link})


@router.post("/{token}/utmaning")
async def challenge(request: Request, token: str) -> Response:
    def make() -> dict[str, str]:
        with database_of(request).session() as session:
            order, value = enrolment.new_challenge(session, token)
            data = enrolment.data_to_sign(value, order.card_number)
            return {
                "challenge": value,
                "dataToSign": base64.b64encode(data).decode("ascii"),
                "cardNumber": order.card_number,
                "hsaId": order.hsa_id or "",
                "validTo": order.valid_to.isoformat(),
            }

    try:
        return JSONResponse(await run_in_threadpool(make))
    except Refused as refused:
        return _refusal(refused)


def _submission(body: bytes) -> Submission:
    if len(body) > MAX_BODY_BYTES:
        raise Refused("upload_too_large")
    try:
        given = json.loads(body)
        return Submission(
            challenge=str(given["challenge"]),
            card_number=str(given["cardNumber"]),
            certificate_pem=str(given["certificate"]),
            algorithm=str(given["algorithm"]),
            signature=base64.b64decode(str(given["signature"]), validate=True),
            card_hsa_ids=tuple(str(h) for h in given.get("cardHsaIds", [])),
            public_key_pem=str(given["publicKey"]),
            new_key_algorithm=str(given["newKeyAlgorithm"]),
            new_key_signature=base64.b64decode(str(given["newKeySignature"]), validate=True),
        )
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise Refused("bad_request", type(exc).__name__) from exc


@router.post("/{token}/certifikat")
async def certificate(request: Request, token: str) -> Response:
    settings = settings_of(request)
    database = database_of(request)
    body = await request.body()

    def run() -> dict[str, Any]:
        submission = _submission(body)
        # The session commits on refusal too: the challenge is spent either way.
        refusal: Refused | None = None
        with database.session() as session:
            try:
                order, issued = enrolment.issue(
                    session,
                    request.app.state.pki(),
                    request.app.state.validator_for,
                    token,
                    submission,
                )
            except Refused as refused:
                order_id = None
                found = enrolment.find_order(session, token)
                if found is not None:
                    order_id = found.id
                audit.record(
                    session,
                    "recipient",
                    "certificate_refused",
                    order_id=order_id,
                    detail=f"{refused.reason}: {refused.detail}",
                )
                refusal = refused
        if refusal is not None:
            raise refusal
        try:
            idp_directory.sync_pending(settings, database.session)
        except Exception:
            # The certificate is on its way to the card either way; the background loop
            # tells the IdP later.
            logger.exception("telling the IdP's directory failed; it will be retried")
        pem = issued.public_bytes(serialization.Encoding.PEM).decode("ascii")
        return {"certificate": pem, "hsaId": order.hsa_id}

    try:
        return JSONResponse(await run_in_threadpool(run))
    except Refused as refused:
        return _refusal(refused)

"""The browser's side of "SITHS eID på annan enhet": the QR page, collect, and cancel.

The page works without JavaScript (it reloads itself every two seconds); with JavaScript it
polls ``collect`` once a second and swaps in the new QR code. Everything is bound to the pending
login *and* the browser's cookie, so the order can only finish the login that started it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from idp.login.errors import LoginFailed
from idp.login.pending import BROWSER_COOKIE
from idp.methods.other_device.orders import (
    OrderRecord,
    OrderStatus,
    current_qr_content,
    now_utc,
)
from idp.methods.other_device.qr import qr_svg
from idp.methods.other_device.status_texts import HINT_TEXTS
from idp.methods.other_device.waiting import WaitingForApp, cancel_live_order, waiting_for_app
from idp.services import Services
from idp.web.json_response import JsonResponse
from idp.web.login_pages import cancel_login
from idp.web.messages import message_for
from idp.web.refusals import refuse
from idp.web.render import render_page

SELF_EXPLAINED_FAILURES = ("expired_order", "user_cancel")
# What collect says for each hint, made once: the QR page's script polls once a second.
_MESSAGES = {hint: {"sv": text.sv, "en": text.en} for hint, text in HINT_TEXTS.items()}
_NO_STORE = {"Cache-Control": "no-store"}


def _view(order: OrderRecord | None, reference: str) -> dict[str, Any]:
    """What the page and collect show for an order (None: the login has finished its
    method), without any secret."""
    if order is None or order.status == OrderStatus.COMPLETE:
        return {
            "status": OrderStatus.COMPLETE.value,
            "hintCode": order.hint_code if order is not None else "",
            "message": _MESSAGES["complete"],
            "qr": None,
            "next": f"/login/continue?ref={reference}",
        }
    hint = order.hint_code if order.hint_code in _MESSAGES else "outstandingTransaction"
    view: dict[str, Any] = {
        "status": order.status,
        "hintCode": order.hint_code,
        "message": _MESSAGES[hint],
        "qr": None,
        "next": None,
    }
    if order.status == OrderStatus.PENDING and order.hint_code == "outstandingTransaction":
        view["qr"] = qr_svg(current_qr_content(order, now_utc()))
    # The hint's own text already says why for these; only card problems need the reason too.
    if order.status == OrderStatus.FAILED and order.failure_reason not in (
        "",
        *SELF_EXPLAINED_FAILURES,
    ):
        text, reason = HINT_TEXTS[hint], message_for(order.failure_reason)
        view["reason"] = order.failure_reason
        view["message"] = {
            "sv": f"{text.sv} {reason.title_sv}: {reason.text_sv}",
            "en": f"{text.en} {reason.title_en}: {reason.text_en}",
        }
    return view


class OtherDeviceBrowser:
    """The QR page, collect and cancel, wired to ``services`` (:meth:`router`)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/login/other-device", self.qr_page, methods=["GET"])
        router.add_api_route("/login/other-device/collect", self.collect, methods=["GET"])
        router.add_api_route("/login/other-device/cancel", self.cancel, methods=["POST"])
        return router

    async def _waiting(self, request: Request, reference: str, *, start_new: bool) -> WaitingForApp:
        return await run_in_threadpool(
            lambda: waiting_for_app(
                self.services.database,
                reference,
                request.cookies.get(BROWSER_COOKIE),
                start_new=start_new,
            )
        )

    async def qr_page(self, request: Request, ref: str = "", new: int = 0) -> Response:
        try:
            waiting = await self._waiting(request, ref, start_new=bool(new))
        except LoginFailed as exc:
            return await refuse(self.services, request, exc, reference=ref)
        order = waiting.order
        if order is None or order.status == OrderStatus.COMPLETE:
            return RedirectResponse(f"/login/continue?ref={ref}", status_code=303)
        view = _view(order, ref)
        return render_page(
            request,
            "idp/other_device.html",
            {
                "reference": ref,
                "client_name": waiting.client_name,
                "view": view,
                "auto_start_url": (
                    f"sithseid:///?autostarttoken={order.auto_start_token}&redirect=null"
                ),
                "refresh": order.status == OrderStatus.PENDING,
            },
        )

    async def collect(self, request: Request) -> Response:
        """The QR page's poll: the order's state and the current QR code, as JSON."""
        reference = request.query_params.get("ref", "")
        try:
            waiting = await self._waiting(request, reference, start_new=False)
        except LoginFailed as exc:
            message = message_for(exc.reason)
            refused = {
                "status": OrderStatus.FAILED.value,
                "hintCode": exc.reason,
                "reason": exc.reason,
                "message": {"sv": message.text_sv, "en": message.text_en},
                "qr": None,
                "next": None,
            }
            return JsonResponse(refused, status_code=message.status_code, headers=_NO_STORE)
        return JsonResponse(_view(waiting.order, reference), headers=_NO_STORE)

    async def cancel(self, request: Request) -> Response:
        """The user gives up on the QR page: the order fails (the app is told ``cancelled``) and
        the login ends, with the way back to the application."""
        form = await request.form(max_files=0, max_fields=5)
        return await cancel_login(
            self.services, request, str(form.get("ref", "")), also=cancel_live_order
        )

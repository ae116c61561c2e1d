"""Refusing a login step: an audit event naming the reason, then the user's error page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from idp.audit import record_refusal_in_thread
from idp.login.errors import LoginFailed
from idp.services import Services
from idp.web.back_to_service import back_to_service
from idp.web.render import error_page


async def refuse(
    services: Services,
    request: Request,
    exc: LoginFailed,
    *,
    reference: str = "",
    method: str = "",
    retry_url: str | None = None,
) -> Response:
    """Audit the refusal and show the page; for the login ``reference`` of this browser the
    page also offers the way back to the application with the protocol's error answer."""
    await record_refusal_in_thread(
        services.database,
        "login.step",
        exc,
        outcome="failure",
        hsa_id=exc.hsa_id,
        method=method,
        where=request.url.path,
    )
    back = await back_to_service(services, request, reference, cancelled=False, detail=exc.reason)
    return error_page(request, exc.reason, retry_url=retry_url, back_to_service=back)

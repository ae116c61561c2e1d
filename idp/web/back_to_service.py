"""Sending a login that ended without success back to the application that asked.

Once a valid request from a known application is in hand, every way a login can end without
success — refused card, unknown person, time out, the user cancelling — shows the IdP's page
saying what happened, and on it a button back to the application carrying the protocol's
error answer (a signed SAML Response with AuthnFailed or the eID Framework's cancel status, or
an OIDC ``access_denied`` redirect). Only the browser that started the login gets it.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from idp.login.pending import BROWSER_COOKIE, answerable_login
from idp.services import BackToService, Services


async def back_to_service(
    services: Services, request: Request, reference: str, *, cancelled: bool, detail: str
) -> BackToService | None:
    """The way back for the login ``reference`` of this browser, or None where there is none
    to give (no such login, another browser's, already answered, a protocol with no answer)."""
    browser = request.cookies.get(BROWSER_COOKIE)

    def load() -> tuple[str, dict] | None:
        with services.database.session() as session:
            pending = answerable_login(session, reference, browser)
            return None if pending is None else (pending.protocol, dict(pending.protocol_state))

    loaded = await run_in_threadpool(load)
    if loaded is None:
        return None
    protocol, protocol_state = loaded
    responder = services.failure_responders.get(protocol)
    if responder is None:
        return None
    return await run_in_threadpool(
        lambda: responder(protocol_state, cancelled=cancelled, detail=detail[:200])
    )

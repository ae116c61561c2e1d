"""SITHS eID på denna enhet: the card certificate arrives in a TLS client-certificate handshake.

This endpoint is served on the certificate listener's origin (``cert_login_url``) so that the
browser's card prompt appears here and nowhere else. It validates the certificate, finds the
person and records the result on the pending login of *this* browser, then sends the browser
back to the main origin to finish.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from idp.audit import record_audit_event_in_thread
from idp.client_certificate import presented_certificate
from idp.login.errors import LoginFailed
from idp.login.pending import BROWSER_COOKIE, PendingState, load_pending_login
from idp.services import Services, services_of
from idp.siths.validation import CertificateRejected, RejectionReason, load_certificate
from idp.web.back_to_service import back_to_service
from idp.web.render import error_page

METHOD = "siths-this-device"
router = APIRouter()


@router.get("/cert-login")
async def certificate_login(request: Request, ref: str = "") -> Response:
    services = services_of(request)
    settings = services.settings
    browser = request.cookies.get(BROWSER_COOKIE)
    source = presented_certificate(
        request, header_name=settings.client_cert_header, trusted_proxies=services.trusted_proxies
    )
    retry_url = f"{settings.base_url}/login?ref={ref}"

    def authenticate() -> None:
        with services.database.transaction() as session:
            pending = load_pending_login(session, ref, browser, expected_state=PendingState.PENDING)
            if source.certificate is None:
                raise CertificateRejected(RejectionReason.NO_CERTIFICATE, "no client certificate")
            leaf = load_certificate(source.certificate.leaf)
            intermediates = [load_certificate(pem) for pem in source.certificate.intermediates]
            services.authenticator.authenticate_certificate(
                session, pending, leaf, intermediates, METHOD
            )

    if source.untrusted_header_from is not None:
        detail = f"certificate header from {source.untrusted_header_from}"
        reason = "untrusted_certificate_header"
        await _audit(services, "proxy.untrusted_header", "ignored", reason, detail)
    try:
        await run_in_threadpool(authenticate)
    except (LoginFailed, CertificateRejected) as exc:
        await _audit(services, "login.method", "failure", exc.reason, exc.detail, hsa_id=exc.hsa_id)
        back = await back_to_service(request, ref, cancelled=False, detail=exc.reason)
        return error_page(request, exc.reason, retry_url=retry_url, back_to_service=back)
    return RedirectResponse(f"{settings.base_url}/login/continue?ref={ref}", status_code=303)


async def _audit(
    services: Services, event: str, outcome: str, reason: str, detail: str, hsa_id: str = ""
) -> None:
    await record_audit_event_in_thread(
        services.database,
        event,
        outcome=outcome,
        reason=reason,
        hsa_id=hsa_id,
        method=METHOD,
        detail=detail,
    )

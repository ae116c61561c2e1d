"""SITHS eID på denna enhet: the card certificate arrives in a TLS client-certificate handshake.

This endpoint is served on the certificate listener's origin (``cert_login_url``) so that the
browser's card prompt appears here and nowhere else. It validates the certificate, finds the
person and records the result on the pending login of *this* browser. When that names one
HSA-ID, the login is finished in the same transaction and this origin answers with the
protocol's answer (the SAML Response form, the OIDC redirect), as ``/login/continue`` would;
when the user must choose a tjänste-id first, or the login was already completed (a reload,
or a proxy's retry of a request whose answer was lost), the browser is sent back to
``/login/continue`` on the main origin.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from idp.audit import record_audit_event_in_thread
from idp.client_certificate import CertificateSource, presented_certificate
from idp.login.errors import LoginFailed
from idp.login.pending import BROWSER_COOKIE, PendingState, load_pending_login
from idp.login.steps import FinishedLogin
from idp.services import BuildAnswer, Services
from idp.siths.validation import CertificateRejected, RejectionReason, load_certificate
from idp.web.back_to_service import back_to_service
from idp.web.login_pages import answer_finished_login, settle_answer
from idp.web.plain_route import PlainRoute
from idp.web.render import error_page

METHOD = "siths-this-device"


class ThisDeviceLogin:
    """``/cert-login``, wired to ``services`` (:meth:`router`)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route(
            "/cert-login", self.certificate_login, methods=["GET"], route_class_override=PlainRoute
        )
        return router

    async def certificate_login(self, request: Request) -> Response:
        """The card's request: ``ref`` (the query parameter) names the pending login."""
        ref = request.query_params.get("ref", "")
        services = self.services
        settings = services.settings
        browser = request.cookies.get(BROWSER_COOKIE)
        source = presented_certificate(
            request,
            header_name=settings.client_cert_header,
            trusted_proxies=services.trusted_proxies,
        )
        retry_url = f"{settings.base_url}/login?ref={ref}"
        continue_url = f"{settings.base_url}/login/continue?ref={ref}"
        if source.untrusted_header_from is not None:
            detail = f"certificate header from {source.untrusted_header_from}"
            reason = "untrusted_certificate_header"
            await _audit(services, "proxy.untrusted_header", "ignored", reason, detail)
        try:
            answer = await services.blocking_calls.run(
                self._authenticate_and_answer, ref, browser, source
            )
        except (LoginFailed, CertificateRejected) as exc:
            await _audit(
                services, "login.method", "failure", exc.reason, exc.detail, hsa_id=exc.hsa_id
            )
            back = await back_to_service(services, request, ref, cancelled=False, detail=exc.reason)
            return error_page(request, exc.reason, retry_url=retry_url, back_to_service=back)
        if answer is None:
            return RedirectResponse(continue_url, status_code=303)
        finished, prepared = answer
        return answer_finished_login(services, request, finished, prepared)

    def _authenticate_and_answer(
        self, reference: str, browser: str | None, source: CertificateSource
    ) -> tuple[FinishedLogin, object] | None:
        """:meth:`_authenticate`, and when that finished the login, its protocol's answer
        built in the same blocking call (after the login's transaction has committed)."""
        settled = self._authenticate(reference, browser, source)
        if settled is None:
            return None
        finished, build = settled
        return finished, build()

    def _authenticate(
        self, reference: str, browser: str | None, source: CertificateSource
    ) -> tuple[FinishedLogin, BuildAnswer] | None:
        """The card's certificate on this browser's pending login, in one transaction: when it
        names one HSA-ID, the finished login with its protocol's answer settled; None when the
        user must choose a tjänste-id first, or the login was already completed (a reload, a
        retry)."""
        services = self.services
        with services.database.transaction() as session:
            pending = load_pending_login(
                session,
                reference,
                browser,
                expected_state=(PendingState.PENDING, PendingState.COMPLETED),
            )
            if pending.state == PendingState.COMPLETED:
                return None  # /login/continue answers again, or says why not
            if source.certificate is None:
                raise CertificateRejected(RejectionReason.NO_CERTIFICATE, "no client certificate")
            leaf = load_certificate(source.certificate.leaf)
            intermediates = [load_certificate(pem) for pem in source.certificate.intermediates]
            finished = services.authenticator.authenticate_certificate(
                session,
                pending,
                leaf,
                intermediates,
                METHOD,
                finish=services.steps.finish_authenticated,
            ).finished
            if finished is None:
                return None
            return finished, settle_answer(services, session, finished)


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

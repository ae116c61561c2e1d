"""HTTP endpoints of SAML Single Logout (mounted under ``/saml`` by :mod:`idp.saml.endpoints`).

- ``/saml/slo/redirect`` (GET) and ``/saml/slo/post`` (POST): an SP's LogoutRequest ends the
  browser's SSO session (and the sessions in which that SP knows the user by that NameID),
  then the session's other SPs are logged out in turn and the SP gets a signed
  LogoutResponse; an SP's LogoutResponse to the IdP's LogoutRequest moves the run on.
- ``/saml/logout`` (GET asks, POST does): the user logs out at the IdP; the SSO session ends
  and every SP that took part gets a LogoutRequest.

A refused message gets the error page and no SAML answer (its sender is not trusted).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging

from fastapi import APIRouter
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from idp.audit import record_audit_event
from idp.errors import Refusal
from idp.login.sso import (
    SSO_COOKIE,
    end_sso_session,
    end_sso_sessions_by_key,
    find_sso_session,
    sso_session_key_of_token,
)
from idp.saml import logout_run
from idp.saml.bindings import (
    MAX_PARAMETERS,
    SAML_REQUEST,
    SAML_RESPONSE,
    BindingMessage,
    BindingMessageRejected,
    read_post_form,
    read_redirect_query,
)
from idp.saml.logout import LogoutRejected, Outgoing, SamlLogout
from idp.saml.participants import participants_of, session_keys_of_subject
from idp.saml.reasons import SamlReason
from idp.saml.server import SamlIdentityProvider, saml_of
from idp.services import Services, services_of
from idp.store.models import SeenMessage
from idp.web.messages import message_for
from idp.web.render import error_page, render_page

logger = logging.getLogger("idp.saml")
router = APIRouter()
# A LogoutRequest ID is remembered for longer than its IssueInstant is accepted.
REPLAY_WINDOW = dt.timedelta(minutes=15)


def _logout_of(request: Request) -> SamlLogout:
    return SamlLogout(services_of(request).settings, saml_of(request))


@router.get("/slo/redirect")
async def single_logout_redirect(request: Request) -> Response:
    try:
        received = read_redirect_query(request.scope.get("query_string", b""), _MESSAGES)
    except BindingMessageRejected as exc:
        return _rejected(services_of(request), request, "saml.logout", exc)
    return await _receive(request, BINDING_HTTP_REDIRECT, received)


@router.post("/slo/post")
async def single_logout_post(request: Request) -> Response:
    try:
        form = await request.form(max_files=0, max_fields=MAX_PARAMETERS)
        received = read_post_form(form, _MESSAGES)
    except BindingMessageRejected as exc:
        return _rejected(services_of(request), request, "saml.logout", exc)
    return await _receive(request, BINDING_HTTP_POST, received)


_MESSAGES = (SAML_REQUEST, SAML_RESPONSE)


@router.get("/logout")
async def logout_page(request: Request) -> Response:
    """IdP-initiated logout, step 1: show what will be logged out and ask (a link alone must
    not log anybody out)."""
    services = services_of(request)
    token = request.cookies.get(SSO_COOKIE)

    def load() -> list[str] | None:
        with services.database.session() as session:
            if find_sso_session(session, token) is None:
                return None
            key = sso_session_key_of_token(session, token)
            return [row.sp_entity_id for row in participants_of(session, key)] if key else []

    entity_ids = await run_in_threadpool(load)
    if entity_ids is None:
        return render_page(request, "idp/saml_logout.html", {"state": "not_logged_in"})
    names = await run_in_threadpool(_display_names, saml_of(request), entity_ids)
    return render_page(
        request,
        "idp/saml_logout.html",
        {"state": "confirm", "services": names, "csrf": _logout_csrf(token)},
    )


@router.post("/logout")
async def logout(request: Request) -> Response:
    """IdP-initiated logout, step 2: end the SSO session and log out its SPs."""
    services = services_of(request)
    form = await request.form(max_files=0, max_fields=5)
    token = request.cookies.get(SSO_COOKIE)
    if not token:
        return render_page(request, "idp/saml_logout.html", {"state": "not_logged_in"})
    if not hmac.compare_digest(str(form.get("csrf", "")), _logout_csrf(token)):
        # Not our confirmation form (a cross-site post): ask again instead.
        return RedirectResponse("/saml/logout", status_code=303)

    def begin() -> str:
        with services.database.session() as session:
            authentication = find_sso_session(session, token)
            key = sso_session_key_of_token(session, token)
            end_sso_session(session, token)
            if key and authentication is not None:
                end_sso_sessions_by_key(session, authentication.hsa_id, key)
            record_audit_event(
                session,
                "logout",
                outcome="success",
                reason="idp_initiated",
                hsa_id=authentication.hsa_id if authentication else "",
                method="slo",
            )
            return logout_run.begin_run(session, {key} if key else set(), None)

    run_id = await run_in_threadpool(begin)
    return _forget_sso(await _continue(request, services, run_id))


async def _receive(request: Request, binding: str, received: BindingMessage) -> Response:
    services = services_of(request)
    if received.is_request:
        return await _receive_request(request, services, binding, received)
    return await _receive_response(request, services, binding, received)


async def _receive_request(
    request: Request,
    services: Services,
    binding: str,
    received: BindingMessage,
) -> Response:
    """SP-initiated logout: end the sessions, then log out the session's other SPs."""
    try:
        incoming = await run_in_threadpool(
            _logout_of(request).read_logout_request, binding, received
        )
    except LogoutRejected as exc:
        return _rejected(services, request, "saml.logout_request", exc)
    token = request.cookies.get(SSO_COOKIE)
    initiator = logout_run.Initiator(
        incoming.sp_entity_id, incoming.request_id, binding, received.relay_state
    )

    def begin() -> str:
        with services.database.session() as session:
            session.add(
                SeenMessage(
                    issuer=incoming.sp_entity_id,
                    message_id=incoming.request_id[:256],
                    expires_at=dt.datetime.now(dt.UTC) + REPLAY_WINDOW,
                )
            )
            try:
                session.flush()
            except IntegrityError as exc:
                raise LogoutRejected(SamlReason.REPLAYED_REQUEST, incoming.request_id[:80]) from exc
            subjects = session_keys_of_subject(
                session, incoming.sp_entity_id, incoming.name_id, incoming.session_indexes
            )
            keys = {key for key, _hsa_id in subjects}
            # The browser's own session too: the user asked to log out in this browser.
            browser_key = sso_session_key_of_token(session, token)
            authentication = find_sso_session(session, token)
            end_sso_session(session, token)
            for key, hsa_id in subjects:
                end_sso_sessions_by_key(session, hsa_id, key)
            if browser_key:
                keys.add(browser_key)
            hsa_id = (
                subjects[0][1] if subjects else (authentication.hsa_id if authentication else "")
            )
            record_audit_event(
                session,
                "logout",
                outcome="success",
                reason="sp_initiated",
                hsa_id=hsa_id,
                client_id=incoming.sp_entity_id,
                method="slo",
            )
            return logout_run.begin_run(session, keys, initiator)

    try:
        run_id = await run_in_threadpool(begin)
    except LogoutRejected as exc:
        return _rejected(services, request, "saml.logout_request", exc, incoming.sp_entity_id)
    return _forget_sso(await _continue(request, services, run_id))


async def _receive_response(
    request: Request, services: Services, binding: str, received: BindingMessage
) -> Response:
    """An SP's answer to the IdP's LogoutRequest: record it and go on with the run."""
    try:
        incoming = await run_in_threadpool(
            _logout_of(request).read_logout_response, binding, received
        )
    except LogoutRejected as exc:
        return _rejected(services, request, "saml.logout_response", exc)

    def record() -> str | None:
        with services.database.session() as session:
            return logout_run.record_answer(
                session, incoming.sp_entity_id, incoming.in_response_to, incoming.success
            )

    run_id = await run_in_threadpool(record)
    if run_id is None:
        exc = LogoutRejected(SamlReason.UNSOLICITED_RESPONSE, incoming.in_response_to[:80])
        return _rejected(services, request, "saml.logout_response", exc, incoming.sp_entity_id)
    if not incoming.success:
        logger.info("%s did not confirm the logout", incoming.sp_entity_id)
    return await _continue(request, services, run_id)


async def _continue(request: Request, services: Services, run_id: str) -> Response:
    """Send the run's next LogoutRequest, or, when none is left, answer the initiating SP (or
    show the user the outcome)."""
    logout = _logout_of(request)

    def step() -> Outgoing | logout_run.Outcome:
        while True:
            with services.database.session() as session:
                next_step = logout_run.next_step(session, run_id)
            if next_step is None:
                break
            try:
                message = logout.logout_request(next_step.subject, relay_state=run_id)
            except Exception:
                logger.exception("no LogoutRequest for %s", next_step.subject.sp_entity_id)
                message = None
            with services.database.session() as session:
                if message is None:
                    logout_run.mark_unsupported(session, next_step.participant_id)
                else:
                    logout_run.mark_sent(session, next_step.participant_id, message.message_id)
                    return message
        with services.database.session() as session:
            outcome = logout_run.finish_run(session, run_id)
        initiator = outcome.initiator
        if initiator is not None:
            answer = logout.logout_response(
                initiator.sp_entity_id,
                initiator.request_id,
                initiator.binding,
                initiator.relay_state,
                outcome.partial,
            )
            if answer is not None:
                return answer
        return outcome

    result = await run_in_threadpool(step)
    if isinstance(result, Outgoing):
        return _send(request, result)
    saml = saml_of(request)
    confirmed = await run_in_threadpool(_display_names, saml, list(result.confirmed))
    unconfirmed = await run_in_threadpool(_display_names, saml, list(result.unconfirmed))
    return render_page(
        request,
        "idp/saml_logout.html",
        {"state": "done", "confirmed": confirmed, "unconfirmed": unconfirmed},
    )


def _send(request: Request, message: Outgoing) -> Response:
    if message.binding == BINDING_HTTP_REDIRECT:
        return RedirectResponse(message.url, status_code=303)
    return render_page(
        request, "idp/post_binding.html", {"action": message.url, "fields": message.fields}
    )


def _rejected(
    services: Services, request: Request, event: str, exc: Refusal, client_id: str = ""
) -> Response:
    with services.database.session() as session:
        record_audit_event(
            session,
            event,
            outcome="rejected",
            reason=exc.reason,
            client_id=client_id,
            detail=exc.detail,
        )
    return error_page(request, exc.reason, message=message_for("saml_invalid_logout"))


def _display_names(saml: SamlIdentityProvider, entity_ids: list[str]) -> list[str]:
    names = []
    for entity_id in entity_ids:
        sp = saml.describe_sp(entity_id)
        names.append(sp.display_name if sp is not None else entity_id)
    return names


def _forget_sso(response: Response) -> Response:
    response.delete_cookie(SSO_COOKIE, path="/", secure=True, httponly=True, samesite="none")
    return response


def _logout_csrf(sso_token: str | None) -> str:
    # Bound to the SSO cookie, which a cross-site page cannot read: only the IdP's own
    # confirmation form can carry the right value.
    return hashlib.sha256(f"saml-logout\x00{sso_token or ''}".encode()).hexdigest()

"""The pages of steps 1-5: the IT-kontaktperson's orders (one by one, or a CSV for a whole
staff) and the EKU administrator's list with its three actions.

Handlers parse, call one function of :mod:`portal.orders`, and render; a
:class:`~portal.refusals.Refused` becomes the page's error (with the form kept) or the error
page. Who may do what is checked here, on every request, from the portal's role grants.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from portal import orders, readiness, treserva_steps
from portal.config import today
from portal.models import STATES, Order, OutboxMail, Ticket
from portal.orders import CARD_ISSUERS, OrderInput
from portal.refusals import Refused
from portal.web import (
    Login,
    check_csrf,
    current_login,
    database_of,
    refusal_page,
    render,
    settings_of,
)

router = APIRouter()
LINK_IN_MAIL = re.compile(r"/hamta/\S+")
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
ORDER_FIELDS = ("card_issuer", "card_number", "valid_to", "given_name", "surname", "mail")


def _it_contact(request: Request) -> Login:
    login = current_login(request)
    if login is None:
        raise Refused("login_required")
    if not login.providers:
        raise Refused("not_allowed", "IT-kontaktperson")
    return login


def _eku_admin(request: Request) -> Login:
    login = current_login(request)
    if login is None:
        raise Refused("login_required")
    if not login.eku_admin:
        raise Refused("not_allowed", "Administratör EKU")
    return login


def _provider(login: Login, form_value: object) -> str:
    provider = str(form_value or (login.providers[0] if len(login.providers) == 1 else ""))
    if provider not in login.providers:
        raise Refused("not_allowed", f"provider {provider[:12]}")
    return provider


@router.get("/")
async def start(request: Request) -> Response:
    return render(request, "start.html", {"oidc": request.app.state.oauth is not None})


def _orders_page(request: Request, login: Login, **extra: Any) -> Response:
    with database_of(request).session() as session:
        listed = session.scalars(
            select(Order)
            .where(Order.provider_org.in_(login.providers))
            .order_by(Order.id.desc())
            .limit(500)
        ).all()
    context = {
        "orders": listed,
        "tickets": _tickets_by_order(request, [order.id for order in listed]),
        "issuers": CARD_ISSUERS,
        "acted": None,
        "form": {},
        "refused": None,
        "placed": None,
        **extra,
    }
    return render(request, "orders.html", context, 200 if context["refused"] is None else 400)


def _board(request: Request, login: Login) -> readiness.Board:
    settings = settings_of(request)
    providers = None if login.eku_admin else list(login.providers)
    with database_of(request).session() as session:
        return readiness.build_board(session, providers, settings.cutover_date, today())


def _board_viewer(request: Request) -> Login:
    login = current_login(request)
    if login is None:
        raise Refused("login_required")
    if not login.eku_admin and not login.providers:
        raise Refused("not_allowed", "beredskap")
    return login


@router.get("/beredskap")
async def readiness_board(request: Request) -> Response:
    """Per provider for an IT contact; for the whole city for an EKU administrator."""
    try:
        login = _board_viewer(request)
    except Refused as refused:
        return refusal_page(request, refused)
    board = await run_in_threadpool(_board, request, login)
    return render(
        request,
        "readiness.html",
        {"board": board, "steps": readiness.STEPS, "city": login.eku_admin},
    )


@router.get("/beredskap.csv")
async def readiness_csv(request: Request) -> Response:
    try:
        login = _board_viewer(request)
    except Refused as refused:
        return refusal_page(request, refused)
    board = await run_in_threadpool(_board, request, login)
    return Response(
        readiness.board_csv(board),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="beredskap.csv"'},
    )


@router.get("/utkorg")
async def outbox_page(request: Request) -> Response:
    """The EKU administrator's view of the portal's mail: sent, or waiting to be retried."""
    try:
        _eku_admin(request)
    except Refused as refused:
        return refusal_page(request, refused)

    def load() -> list[OutboxMail]:
        with database_of(request).session() as session:
            return list(
                session.scalars(select(OutboxMail).order_by(OutboxMail.id.desc()).limit(200))
            )

    return render(request, "outbox.html", {"mails": await run_in_threadpool(load)})


@router.get("/utkorg/{mail_id}")
async def outbox_mail(request: Request, mail_id: int) -> Response:
    try:
        _eku_admin(request)
    except Refused as refused:
        return refusal_page(request, refused)

    def load() -> OutboxMail | None:
        with database_of(request).session() as session:
            return session.get(OutboxMail, mail_id)

    found = await run_in_threadpool(load)
    if found is None:
        return refusal_page(request, Refused("not_found"))
    # The recipient's link is theirs alone: an administrator sees that there is one, not it.
    body = LINK_IN_MAIL.sub("/hamta/… (dold / hidden)", found.body)
    return render(request, "mail.html", {"mail": found, "body": body})


@router.get("/bestallningar")
async def orders_page(request: Request) -> Response:
    try:
        login = _it_contact(request)
    except Refused as refused:
        return refusal_page(request, refused)
    return await run_in_threadpool(_orders_page, request, login)


@router.post("/bestallningar")
async def place_order(request: Request) -> Response:
    form = await request.form()
    try:
        login = _it_contact(request)
        check_csrf(request, form.get("csrf"))
        provider = _provider(login, form.get("provider"))
    except Refused as refused:
        return refusal_page(request, refused)
    given = OrderInput(
        **{name: str(form.get(name, "")) for name in ORDER_FIELDS},
        windows_account=str(form.get("windows_account", "")),
    )

    def place() -> Order:
        with database_of(request).session() as session:
            return orders.place_order(session, given, provider, login.hsa_id)

    try:
        placed = await run_in_threadpool(place)
    except Refused as refused:
        return await run_in_threadpool(
            _orders_page, request, login, form=given.__dict__, refused=refused
        )
    return await run_in_threadpool(_orders_page, request, login, placed=placed)


@router.post("/bestallningar/import")
async def import_orders(request: Request) -> Response:
    form = await request.form(max_part_size=MAX_UPLOAD_BYTES)
    try:
        login = _it_contact(request)
        check_csrf(request, form.get("csrf"))
        provider = _provider(login, form.get("provider"))
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise Refused("csv_empty")
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise Refused("upload_too_large")
    except Refused as refused:
        return refusal_page(request, refused)
    job = request.app.state.import_jobs.start(
        database_of(request), data, provider, login.hsa_id, login.hsa_id
    )
    return RedirectResponse(f"/bestallningar/import/{job.id}", status_code=303)


def _tickets_by_order(request: Request, order_ids: list[int]) -> dict[int, Ticket]:
    with database_of(request).session() as session:
        tickets = session.scalars(
            select(Ticket).where(Ticket.order_id.in_(order_ids)).order_by(Ticket.id)
        ).all()
    return {ticket.order_id: ticket for ticket in tickets}


def _own_order(request: Request, login: Login, order_id: int) -> None:
    """Refuse an order of another provider (or none) as not found."""
    with database_of(request).session() as session:
        order = session.get(Order, order_id)
        if order is None or order.provider_org not in login.providers:
            raise Refused("order_not_found", str(order_id))


@router.post("/bestallningar/{order_id}/{action}")
async def it_contact_action(request: Request, order_id: int, action: str) -> Response:
    """Step 7 (``treserva``: the HSA-ID to Treserva by SCIM) and step 8's ticket
    (``arende``)."""
    form = await request.form()
    try:
        login = _it_contact(request)
        check_csrf(request, form.get("csrf"))
        if action not in ("treserva", "arende"):
            raise Refused("not_found")
        version = _version(form.get("version"))
        await run_in_threadpool(_own_order, request, login, order_id)
    except Refused as refused:
        return refusal_page(request, refused)
    database, settings = database_of(request), settings_of(request)

    def act() -> str:
        if action == "treserva":
            treserva_steps.push_to_treserva(database, settings, order_id, version, login.actor)
            return "treserva"
        ticket = treserva_steps.raise_ticket(database, order_id, version, login.actor)
        return f"T-{ticket.id}"

    try:
        done = await run_in_threadpool(act)
    except Refused as refused:
        return await run_in_threadpool(_orders_page, request, login, refused=refused)
    return await run_in_threadpool(_orders_page, request, login, acted=done)


def _version(value: object) -> int:
    try:
        return int(str(value or ""))
    except ValueError as exc:
        raise Refused("wrong_state", "no version") from exc


@router.get("/bestallningar/import/{job_id}")
async def import_progress(request: Request, job_id: str) -> Response:
    try:
        login = _it_contact(request)
    except Refused as refused:
        return refusal_page(request, refused)
    job = request.app.state.import_jobs.get(job_id, login.hsa_id)
    if job is None:
        return refusal_page(request, Refused("not_found"))
    return render(request, "import.html", {"job": job})


def _eku_page(request: Request, **extra: Any) -> Response:
    state = request.query_params.get("state", "")
    with database_of(request).session() as session:
        statement = select(Order).order_by(Order.id.desc()).limit(500)
        if state in STATES:
            statement = statement.where(Order.state == state)
        listed = session.scalars(statement).all()
        open_tickets = session.scalars(
            select(Ticket).where(Ticket.state == treserva_steps.OPEN).order_by(Ticket.id)
        ).all()
        ticket_orders = {t.order_id: session.get(Order, t.order_id) for t in open_tickets}
    context = {
        "orders": listed,
        "tickets": open_tickets,
        "ticket_orders": ticket_orders,
        "refused": None,
        "done": None,
        "ticket_done": None,
        "state": state,
        **extra,
    }
    status = 200 if context["refused"] is None else context["refused"].words.status_code
    return render(request, "eku.html", context, status)


@router.get("/eku")
async def eku_page(request: Request) -> Response:
    try:
        _eku_admin(request)
    except Refused as refused:
        return refusal_page(request, refused)
    return await run_in_threadpool(_eku_page, request)


ACTIONS = ("registrera", "bekrafta", "vidarebefordra")


@router.post("/eku/{order_id}/{action}")
async def eku_action(request: Request, order_id: int, action: str) -> Response:
    form = await request.form()
    try:
        login = _eku_admin(request)
        check_csrf(request, form.get("csrf"))
        if action not in ACTIONS:
            raise Refused("not_found")
        version = _version(form.get("version"))
    except Refused as refused:
        return refusal_page(request, refused)
    settings = settings_of(request)

    def act() -> Order:
        with database_of(request).session() as session:
            if action == "registrera":
                return orders.register_case(session, order_id, version, login.actor)
            if action == "bekrafta":
                return orders.confirm_order(
                    session, order_id, version, login.actor, settings.hsa_id_series
                )
            return orders.forward_order(session, settings, order_id, version, login.actor)

    try:
        done = await run_in_threadpool(act)
    except Refused as refused:
        return await run_in_threadpool(_eku_page, request, refused=refused)
    return await run_in_threadpool(_eku_page, request, done=done)


@router.post("/support/{ticket_id}/utfor")
async def carry_out_ticket(request: Request, ticket_id: int) -> Response:
    """Support carries out a ticket in Treserva (step 8)."""
    form = await request.form()
    try:
        login = _eku_admin(request)
        check_csrf(request, form.get("csrf"))
    except Refused as refused:
        return refusal_page(request, refused)
    database, settings = database_of(request), settings_of(request)
    try:
        ticket = await run_in_threadpool(
            treserva_steps.carry_out_ticket, database, settings, ticket_id, login.actor
        )
    except Refused as refused:
        return await run_in_threadpool(_eku_page, request, refused=refused)
    return await run_in_threadpool(_eku_page, request, ticket_done=ticket)

"""All eight steps of the routine for one employee, over real sockets: the portal, the IdP and
mock Treserva as real servers (uvicorn, TLS), an SMTP server (aiosmtpd) whose mails are read,
and the employee's card on a SoftHSM2 token. It ends with the employee logging in to mock
Treserva with the SITHS eID app on that card, now carrying two organisations' certificates,
choosing the Göteborg tjänste-id, and seeing the permissions the ticket moved."""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from portal import audit, card_client, orders, treserva_steps
from portal.config import today
from portal.models import IN_TRESERVA, ISSUED, Order
from portal.orders import OrderInput
from portal.refusals import Refused
from portal.treserva import TRESERVA_SCHEMA
from siths_testkit.app_simulator import SithsEidApp, SoftHsmCard
from sp_demo import saml
from sp_demo.config import Settings as TreservaSettings
from sp_demo.db import LOGIN_WINDOWS, Permission, User
from sp_demo.db import Database as TreservaDatabase
from tests.conftest import IdpUnderTest
from tests.helpers.support import (
    VENV_BIN,
    RunningServer,
    free_port,
    parse_page,
    run_cli,
    start_server,
    tls_context,
)
from tests.helpers.token_cards import PIN, TokenLab
from tests.portal.portal_server import PortalUnderTest, running_portal
from tests.portal.web_support import csrf_of, register_oidc_client

IT_HSA_ID = "SE5567000010-P0001"  # Erik Ek, IT-kontaktperson at Omsorgsbolaget Väst
EKU_HSA_ID = "SE2120001355-E0001"  # Anna Andersson, Administratör EKU at Göteborgs Stad
EMPLOYEE_HSA_ID = "SE5567000010-P0777"  # Fatima Fors, undersköterska at Omsorgsbolaget Väst
CARD_NUMBER = "9752000000000000777"
WINDOWS_ACCOUNT = "OMSORGVAST\\fatima.fors"
SCIM_TOKEN = "e2e-scim-" + "k" * 32
PERMISSIONS = (("undersköterska", "Hemtjänst Väst"), ("dokumentation", "Hemtjänst Väst"))


def go(client: httpx.Client, response: httpx.Response) -> httpx.Response:
    """Follow redirects as a browser does (relative to the page that sent them)."""
    while response.status_code in (302, 303):
        location = urllib.parse.urljoin(str(response.url), response.headers["location"])
        response = client.get(location)
    return response


def choose_service_id(
    client: httpx.Client, page: httpx.Response, idp: IdpUnderTest, hsa_id: str
) -> httpx.Response:
    assert "Välj tjänste-id" in page.text, page.text[:500]
    ref = re.search(r'name="ref" value="([^"]+)"', page.text).group(1)
    return go(
        client, client.post(f"{idp.base_url}/login/choose", data={"ref": ref, "hsa_id": hsa_id})
    )


def portal_login(
    idp: IdpUnderTest, client: httpx.Client, portal_url: str, choose: str | None
) -> None:
    """Log in to the portal: OIDC to the IdP, the card over client-certificate TLS."""
    chooser = go(client, client.get(f"{portal_url}/login"))
    href = parse_page(chooser.text).links["method-this-device"]
    page = go(client, client.get(urllib.parse.urljoin(str(chooser.url), href)))
    if choose is not None:
        page = choose_service_id(client, page, idp, choose)
    assert str(page.url) == f"{portal_url}/", page.text[:500]
    assert 'id="who"' in page.text


@pytest.fixture(scope="module")
def treserva(
    idp: IdpUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    work = tmp_path_factory.mktemp("treserva-e2e")
    port = free_port()
    settings = TreservaSettings(
        base_url=f"https://localhost:{port}",
        var_dir=work,
        pki_dir=idp.pki.directory,
        sp_key=idp.pki.sp_signing_key,
        sp_cert=idp.pki.sp_signing_cert,
        idp_metadata_url=f"{idp.base_url}/saml/metadata",
        idp_metadata_cert=idp.pki.idp_signing_cert,
    )
    (idp.sp_metadata_dir / "treserva-portal-e2e.xml").write_text(
        saml.build_sp_metadata_xml(settings), encoding="utf-8"
    )
    # Fatima's account as it is before the routine: Windows login only.
    database = TreservaDatabase(settings.database_url)
    with database.session() as session:
        session.add(
            User(
                windows_account=WINDOWS_ACCOUNT,
                display_name="Fatima Fors",
                permissions=[
                    Permission(role=r, unit=u, login=LOGIN_WINDOWS) for r, u in PERMISSIONS
                ],
            )
        )
    database.dispose()
    env = {
        "SP_DEMO_BASE_URL": settings.base_url,
        "SP_DEMO_PORT": str(port),
        "SP_DEMO_VAR_DIR": str(work),
        "SP_DEMO_PKI_DIR": str(idp.pki.directory),
        "SP_DEMO_SP_KEY": str(idp.pki.sp_signing_key),
        "SP_DEMO_SP_CERT": str(idp.pki.sp_signing_cert),
        "SP_DEMO_IDP_METADATA_URL": settings.idp_metadata_url,
        "SP_DEMO_IDP_METADATA_CERT": str(idp.pki.idp_signing_cert),
        "SP_DEMO_SESSION_SECRET": "treserva-e2e-" + "w" * 32,
        "SP_DEMO_SCIM_TOKEN": SCIM_TOKEN,
    }
    server = start_server(
        [str(VENV_BIN / "sp-demo"), "serve", "--log-level", "warning"],
        env,
        f"{settings.base_url}/",
        idp.ca_file,
        work / "treserva.log",
    )
    server.database_url = settings.database_url  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture(scope="module")
def portal(
    idp: IdpUnderTest, treserva: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PortalUnderTest]:
    port = free_port()
    base_url = f"https://localhost:{port}"
    secret = register_oidc_client(idp, "portal-e2e", base_url)
    work = tmp_path_factory.mktemp("portal-e2e")
    env = {
        "PORTAL_OIDC_ISSUER": idp.base_url,
        "PORTAL_OIDC_CLIENT_ID": "portal-e2e",
        "PORTAL_OIDC_CLIENT_SECRET": secret,
        "PORTAL_TRESERVA_URL": treserva.base_url.removesuffix("/"),
        "PORTAL_TRESERVA_TOKEN": SCIM_TOKEN,
    }
    with running_portal(idp, work, env, port, series="E") as running:
        for hsa_id, role, mail in (
            (IT_HSA_ID, "it_contact", "it@omsorgvast.example.invalid"),
            (EKU_HSA_ID, "eku_admin", ""),
        ):
            granted = run_cli(
                [
                    str(VENV_BIN / "portal"),
                    "roles",
                    "grant",
                    hsa_id,
                    "--role",
                    role,
                    "--mail",
                    mail,
                ],
                {"PORTAL_VAR_DIR": str(work)},
            )
            assert granted.returncode == 0, granted.stderr
        yield running


def act(client: httpx.Client, page: httpx.Response, button_id: str) -> httpx.Response:
    """Press the button ``button_id`` on ``page``: post its form with its hidden fields."""
    html = page.text
    position = html.index(f'id="{button_id}"')
    start = html.rindex("<form", 0, position)
    form = parse_page(html[start:position] + "</form>").forms[0]
    return go(
        client,
        client.post(urllib.parse.urljoin(str(page.url), form["action"]), data=form["fields"]),
    )


def test_all_eight_steps_for_one_employee(
    idp: IdpUnderTest, portal: PortalUnderTest, treserva: RunningServer, tmp_path: Path
) -> None:
    url = portal.base_url
    lab = TokenLab(idp.pki, tmp_path / "softhsm")
    # Fatima's card from her employer: one certificate, Omsorgsbolaget Väst's.
    added = idp.idp_cli(
        "people",
        "add",
        "--hsa-id",
        EMPLOYEE_HSA_ID,
        "--given-name",
        "Fatima",
        "--surname",
        "Fors",
        "--organisation",
        "Omsorgsbolaget Väst AB",
    )
    assert added.returncode == 0, added.stderr
    lab.card(CARD_NUMBER, EMPLOYEE_HSA_ID, "Fatima", "Fors")
    recipient = "fatima.fors@omsorgvast.example.invalid"

    with httpx.Client(verify=tls_context(idp.ca_file, *idp.card("erik")), timeout=30) as it_contact:
        # 1. The IT-kontaktperson orders.
        portal_login(idp, it_contact, url, choose=IT_HSA_ID)
        form = it_contact.get(f"{url}/bestallningar")
        ordered = it_contact.post(
            f"{url}/bestallningar",
            data={
                "csrf": csrf_of(form.text),
                "card_issuer": "Inera AB",
                "card_number": "9752 0000 0000 0000 777",
                "valid_to": (today() + dt.timedelta(days=300)).isoformat(),
                "given_name": "Fatima",
                "surname": "Fors",
                "mail": recipient,
                "windows_account": WINDOWS_ACCOUNT,
            },
        )
        assert 'id="placed"' in ordered.text, ordered.text[-2000:]

        with httpx.Client(verify=tls_context(idp.ca_file, *idp.card("anna")), timeout=30) as eku:
            # 2-3. The EKU administrator registers an ärende and gets the case number.
            portal_login(idp, eku, url, choose=None)
            listed = eku.get(f"{url}/eku")
            order_id = re.search(r'data-order="(\d+)"', listed.text).group(1)
            registered = act(eku, listed, f"registrera-{order_id}")
            case_number = re.search(r'id="case-number">([^<]+)<', registered.text).group(1)
            # 4. The confirmation, with the HSA-ID allocated under Göteborgs Stad.
            confirmed = act(eku, registered, f"bekrafta-{order_id}")
            new_hsa_id = re.search(r'id="allocated-hsa-id">([^<]+)<', confirmed.text).group(1)
            assert new_hsa_id.startswith("SE2120001355-")
            # 5. Forwarded to the IT-kontaktperson; the recipient's link goes out.
            forwarded = act(eku, confirmed, f"vidarebefordra-{order_id}")
            assert 'id="done"' in forwarded.text
            to_it = portal.sink.wait_for("it@omsorgvast.example.invalid")[0]
            assert case_number in to_it["Subject"] and new_hsa_id in to_it.get_content()
            to_recipient = portal.sink.wait_for(recipient)[0]
            link = re.search(r"https://\S+/hamta/\S+", to_recipient.get_content()).group(0)

            # 6. The recipient proves possession and gets the certificate onto the same card.
            enrolled = card_client.enrol(
                link, token_label=CARD_NUMBER, pin=PIN, config=lab.config, ca_file=idp.ca_file
            )
            assert enrolled.hsa_id == new_hsa_id
            people = idp.idp_cli("people", "list").stdout
            assert re.search(rf"^{new_hsa_id}\tFatima Fors\t", people, re.M)

            # 7. The HSA-ID into Treserva, by SCIM.
            mine = it_contact.get(f"{url}/bestallningar")
            pushed = act(it_contact, mine, f"treserva-{order_id}")
            assert 'id="acted"' in pushed.text, pushed.text[-1500:]
            # 8. The ticket, carried out by support in Treserva; the outcome on the ticket.
            ticketed = act(it_contact, pushed, f"ticket-{order_id}")
            ticket = re.search(r'id="ticket">T-(\d+)<', ticketed.text).group(1)
            support = eku.get(f"{url}/eku")
            done = act(eku, support, f"carry-out-{ticket}")
            assert 'id="ticket-done"' in done.text
            # The city's readiness board counts her as ready.
            board = eku.get(f"{url}/beredskap").text
            assert '<strong id="ready-count">1</strong>' in board
            assert '<span data-step="8">1 / 1</span>' in board
        final = it_contact.get(f"{url}/bestallningar").text
        assert 'data-state="permissions_moved"' in final
        assert 'data-ticket-state="done"' in final and "Hemtjänst Väst" in final

    # The employee logs in to Treserva with the app on the two-organisation card and chooses
    # the Göteborg tjänste-id.
    card = SoftHsmCard(CARD_NUMBER, PIN, config=lab.config, hsa_id=EMPLOYEE_HSA_ID)
    with httpx.Client(verify=tls_context(idp.ca_file), timeout=30) as browser:
        chooser = go(browser, browser.get(f"{treserva.base_url.removesuffix('/')}/login"))
        href = parse_page(chooser.text).links["method-other-device"]
        qr_page = browser.get(urllib.parse.urljoin(str(chooser.url), href))
        ref = urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)["ref"][0]
        autostart = parse_page(qr_page.text).links["autostart"]
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(autostart).query)["autostarttoken"][0]
        with SithsEidApp(idp.base_url, idp.ca_file, card) as app:
            app.sign(app.scan_auto_start(token))
        view = browser.get(f"{idp.base_url}/login/other-device/collect?ref={ref}").json()
        assert view["status"] == "complete", view
        choice = go(browser, browser.get(idp.base_url + view["next"]))
        assert EMPLOYEE_HSA_ID in choice.text and new_hsa_id in choice.text
        answer = choose_service_id(browser, choice, idp, new_hsa_id)
        form = parse_page(answer.text).forms[0]
        me = go(browser, browser.post(form["action"], data=form["fields"]))
    assert me.status_code == 200, me.text[:1000]
    assert f'<code id="hsa-id">{new_hsa_id}</code>' in me.text
    for role, unit in PERMISSIONS:
        assert f"<td>{role}</td><td>{unit}</td>" in me.text


def test_a_ticket_treserva_cannot_carry_out_fails_with_its_reason(
    idp: IdpUnderTest, portal: PortalUnderTest, treserva: RunningServer
) -> None:
    """Step 7 creates an account Treserva did not have (SCIM POST); before support gets to
    the ticket the account is renamed in Treserva, so the move is refused: the ticket says why
    and the order stays at step 7."""
    settings = portal.settings.model_copy(
        update={
            "treserva_url": treserva.base_url.removesuffix("/"),
            "treserva_token": SCIM_TOKEN,
            "tls_ca_file": idp.ca_file,
        }
    )
    account = "OMSORGVAST\\nils.nyberg"
    with portal.database.session() as session:
        order = orders.place_order(
            session,
            OrderInput(
                "Inera AB",
                "9752000000000000888",
                (today() + dt.timedelta(days=100)).isoformat(),
                "Nils",
                "Nyberg",
                "nils.nyberg@omsorgvast.example.invalid",
                account,
            ),
            "5567000010",
            IT_HSA_ID,
        )
        order = orders.register_case(session, order.id, order.version, EKU_HSA_ID)
        order = orders.confirm_order(
            session, order.id, order.version, EKU_HSA_ID, portal.settings.hsa_id_series
        )
        order = orders.forward_order(session, settings, order.id, order.version, EKU_HSA_ID)
        # Step 6 is the other test's subject; here it is taken as done.
        order.state, order.card_hsa_id, order.idp_directory_done = (
            ISSUED,
            "SE5567000010-P0888",
            True,
        )
        order_id, version = order.id, order.version + 1
    pushed = treserva_steps.push_to_treserva(
        portal.database, settings, order_id, version, IT_HSA_ID
    )
    with httpx.Client(verify=tls_context(idp.ca_file)) as http:
        found = http.get(
            f"{treserva.base_url.removesuffix('/')}/scim/v2/Users/{pushed.scim_id}",
            headers={"Authorization": f"Bearer {SCIM_TOKEN}"},
        ).json()
    assert found["userName"] == account and found[TRESERVA_SCHEMA] == {"hsaId": pushed.hsa_id}
    ticket = treserva_steps.raise_ticket(portal.database, order_id, pushed.version, IT_HSA_ID)
    with pytest.raises(Refused) as twice:
        treserva_steps.raise_ticket(portal.database, order_id, pushed.version, IT_HSA_ID)
    assert twice.value.reason == "ticket_open"
    database = TreservaDatabase(treserva.database_url)  # type: ignore[attr-defined]
    with database.session() as session:
        session.execute(
            update(User).where(User.windows_account == account).values(windows_account="X\\y")
        )
    database.dispose()
    carried = treserva_steps.carry_out_ticket(portal.database, settings, ticket.id, EKU_HSA_ID)
    assert carried.state == "failed"
    assert "finns inte i Treserva" in carried.outcome
    with portal.database.session() as session:
        assert session.get(Order, order_id).state == IN_TRESERVA
        actions = [e.action for e in audit.events_for(session, order_id)]
    assert actions[-3:] == ["treserva_hsa_id", "ticket_raised", "ticket_failed"]

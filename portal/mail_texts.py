"""The portal's mails, in Swedish as the city's letter writes them (subject, body)."""

from __future__ import annotations

import datetime as dt

from portal.models import Order

_SIGNATURE = "\n\nMed vänliga hälsningar\nGöteborgs Stad, Administratör EKU\n"


def forwarded_to_it_contact(order: Order) -> tuple[str, str]:
    subject = f"Beställning av certifikat och HSA-ID mottagen – ärende {order.case_number}"
    body = (
        "Hej!\n\n"
        "Beställningen av certifikat och HSA-ID för SITHS-kort är mottagen och registrerad.\n\n"
        f"Ärendenummer: {order.case_number}\n"
        f"Mottagare: {order.display_name} <{order.mail}>\n"
        f"Kortnummer: {order.card_number}\n"
        f"Tilldelat HSA-ID i Göteborgs Stad: {order.hsa_id}\n"
        f"Certifikatet giltigt till: {order.valid_to.isoformat()}\n\n"
        "När certifikatet är klart får mottagaren ett e-postmeddelande med en länk för att "
        "hämta det till kortet. Lägg därefter in HSA-ID:t i Treserva och anmäl flytt av "
        "behörigheter från Windows-inloggningen till SITHS-inloggningen." + _SIGNATURE
    )
    return subject, body


def link_to_recipient(order: Order, link: str, expires: dt.datetime) -> tuple[str, str]:
    subject = "Ditt certifikat från Göteborgs Stad är klart att hämta"
    body = (
        f"Hej {order.given_name}!\n\n"
        "Ett certifikat från Göteborgs Stad ska läggas på ditt SITHS-kort "
        f"(kortnummer {order.card_number}). Sätt i kortet i kortläsaren och följ länken:\n\n"
        f"{link}\n\n"
        "Länken kan användas en gång och gäller till "
        f"{expires:%Y-%m-%d %H:%M} (UTC). Du behöver kortets PIN-kod." + _SIGNATURE
    )
    return subject, body

"""What mock Treserva tells people when a login does not work: Swedish first, English beside.

Keyed by the stable reason codes of :class:`sp_demo.saml.LoginResponseError` plus the few the
web layer adds. Texts say what happened and what to do, never the technical detail (that goes
to the log).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UserMessage:
    title_sv: str
    text_sv: str
    title_en: str
    text_en: str
    status_code: int = 400


_START_AGAIN_SV = "Gå tillbaka till startsidan och logga in igen."
_START_AGAIN_EN = "Go back to the start page and log in again."

MESSAGES: dict[str, UserMessage] = {
    "unsolicited": UserMessage(
        "Inloggningen kunde inte slutföras",
        "Svaret från inloggningstjänsten hör inte till någon inloggning som startades i den "
        "här webbläsaren, eller så har det redan använts. " + _START_AGAIN_SV,
        "The login could not be completed",
        "The answer from the login service does not belong to a login started in this browser, "
        "or it has been used already. " + _START_AGAIN_EN,
    ),
    "signature": UserMessage(
        "Inloggningssvaret kunde inte verifieras",
        "Svaret från inloggningstjänsten saknar giltig underskrift och kan inte godtas. "
        + _START_AGAIN_SV,
        "The login answer could not be verified",
        "The answer from the login service is not validly signed and cannot be accepted. "
        + _START_AGAIN_EN,
    ),
    "expired": UserMessage(
        "Inloggningen tog för lång tid",
        "Svaret från inloggningstjänsten är inte längre giltigt. " + _START_AGAIN_SV,
        "The login took too long",
        "The answer from the login service is no longer valid. " + _START_AGAIN_EN,
    ),
    "idp_status": UserMessage(
        "Inloggningen avbröts",
        "Inloggningstjänsten meddelade att inloggningen avbröts eller misslyckades. "
        + _START_AGAIN_SV,
        "The login was cancelled",
        "The login service reported that the login was cancelled or failed. " + _START_AGAIN_EN,
    ),
    "attributes": UserMessage(
        "HSA-id saknas",
        "Inloggningssvaret innehåller inget HSA-id, så Treserva vet inte vem du är. Kontakta "
        "din IT-kontaktperson.",
        "HSA-ID missing",
        "The login answer carries no HSA-ID, so Treserva does not know who you are. Contact "
        "your IT contact person.",
        status_code=403,
    ),
    "loa": UserMessage(
        "Inloggningen har för låg tillitsnivå",
        "Treserva kräver inloggning med SITHS-kort (tillitsnivå 3). " + _START_AGAIN_SV,
        "The login's level of assurance is too low",
        "Treserva requires a SITHS card login (level of assurance 3). " + _START_AGAIN_EN,
        status_code=403,
    ),
    "invalid": UserMessage(
        "Inloggningssvaret är ogiltigt",
        "Svaret från inloggningstjänsten kunde inte godtas. " + _START_AGAIN_SV,
        "The login answer is invalid",
        "The answer from the login service could not be accepted. " + _START_AGAIN_EN,
    ),
    "missing_response": UserMessage(
        "Inget inloggningssvar",
        "Sidan förväntar sig ett svar från inloggningstjänsten men fick inget. " + _START_AGAIN_SV,
        "No login answer",
        "This page expects an answer from the login service but received none. " + _START_AGAIN_EN,
    ),
    "idp_unavailable": UserMessage(
        "Inloggningstjänsten går inte att nå",
        "Treserva kan just nu inte hämta uppgifter om Göteborgs Stads Åtkomsttjänst. Försök "
        "igen om en stund; kvarstår felet, kontakta din IT-kontaktperson.",
        "The login service cannot be reached",
        "Treserva cannot currently fetch the details of the City of Gothenburg's access "
        "service. Try again in a while; if the problem remains, contact your IT contact "
        "person.",
        status_code=502,
    ),
    "windows_login_failed": UserMessage(
        "Fel konto eller lösenord",
        "Kontrollera Windows-kontot (t.ex. GBGSTAD\\förnamn.efternamn) och lösenordet och "
        "försök igen.",
        "Wrong account or password",
        "Check the Windows account (e.g. GBGSTAD\\firstname.lastname) and the password and try "
        "again.",
        status_code=401,
    ),
    "csrf": UserMessage(
        "Formuläret har gått ut",
        "Formuläret kom inte från den här sessionen i Treserva. Ladda om sidan och försök igen.",
        "The form has expired",
        "The form did not come from this Treserva session. Reload the page and try again.",
        status_code=403,
    ),
    "not_admin": UserMessage(
        "Du har inte behörighet till administrationen",
        "Administrationssidan kräver behörigheten behörighetsadministratör i Treserva. Kontakta "
        "din IT-kontaktperson om du behöver den.",
        "You have no permission for the administration",
        "The administration page requires the permission administrator permission "
        "(behörighetsadministratör) in Treserva. Contact your IT contact person if you need it.",
        status_code=403,
    ),
    "logout_invalid": UserMessage(
        "Utloggningen kunde inte bekräftas",
        "Meddelandet från inloggningstjänsten om utloggningen kunde inte godtas. Du är utloggad "
        "från Treserva; stäng webbläsaren för att vara säker på att du är utloggad överallt.",
        "The logout could not be confirmed",
        "The logout message from the login service could not be accepted. You are logged out "
        "of Treserva; close the browser to be sure you are logged out everywhere.",
    ),
    "upload_too_large": UserMessage(
        "Filen är för stor",
        "Dela upp filen i mindre delar och importera dem var för sig.",
        "The file is too large",
        "Split the file into smaller parts and import them one by one.",
        status_code=413,
    ),
    "not_found": UserMessage(
        "Sidan finns inte",
        "Adressen leder ingenstans i Treserva.",
        "Page not found",
        "This address leads nowhere in Treserva.",
        status_code=404,
    ),
}

FALLBACK = UserMessage(
    "Något gick fel",
    "Ett oväntat fel inträffade. " + _START_AGAIN_SV,
    "Something went wrong",
    "An unexpected error occurred. " + _START_AGAIN_EN,
    status_code=500,
)


def message_for(reason: str) -> UserMessage:
    return MESSAGES.get(reason, FALLBACK)

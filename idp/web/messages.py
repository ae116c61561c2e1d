"""What the user is told for each reason code: Swedish first, English beside it.

Each message says what happened and what to do. Reason codes are the ones in audit events.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class UserMessage:
    title_sv: str
    text_sv: str
    title_en: str
    text_en: str
    status_code: int = 400
    can_retry: bool = False


_CARD_HELP_SV = "Kontakta din IT-kontaktperson om felet kvarstår."
_CARD_HELP_EN = "Contact your IT contact person if the problem remains."

MESSAGES: dict[str, UserMessage] = {
    "no_certificate": UserMessage(
        "Inget kort hittades",
        "Webbläsaren skickade inget certifikat. Sätt i ditt SITHS-kort i kortläsaren, "
        "välj ditt certifikat när webbläsaren frågar och försök igen.",
        "No card found",
        "The browser sent no certificate. Insert your SITHS card, pick your certificate when "
        "the browser asks, and try again.",
        can_retry=True,
    ),
    "unreadable_certificate": UserMessage(
        "Certifikatet kunde inte läsas",
        f"Certifikatet från kortet gick inte att läsa. Försök igen. {_CARD_HELP_SV}",
        "The certificate could not be read",
        f"The certificate from the card could not be read. Try again. {_CARD_HELP_EN}",
        can_retry=True,
    ),
    "untrusted_issuer": UserMessage(
        "Kortet godkänns inte",
        "Certifikatet är inte utfärdat av SITHS. Använd ditt SITHS-kort. " + _CARD_HELP_SV,
        "The card is not accepted",
        "The certificate was not issued by SITHS. Use your SITHS card. " + _CARD_HELP_EN,
        status_code=403,
        can_retry=True,
    ),
    "certificate_expired": UserMessage(
        "Kortets certifikat har gått ut",
        "Certifikatet på ditt kort är inte längre giltigt. Beställ ett nytt kort via din "
        "IT-kontaktperson.",
        "The card's certificate has expired",
        "The certificate on your card is no longer valid. Order a new card through your IT "
        "contact person.",
        status_code=403,
    ),
    "certificate_not_yet_valid": UserMessage(
        "Kortets certifikat gäller inte ännu",
        "Certifikatet på ditt kort börjar gälla senare. Försök igen när det gäller, eller "
        "kontrollera datorns klocka.",
        "The card's certificate is not valid yet",
        "The certificate on your card becomes valid later. Try again then, or check the "
        "computer's clock.",
        status_code=403,
    ),
    "weak_key": UserMessage(
        "Kortets nyckel godkänns inte",
        "Certifikatets nyckel är för svag eller av ett slag som inte får användas för "
        "inloggning. Välj ett annat certifikat om kortet har flera, annars beställ ett nytt "
        "kort via din IT-kontaktperson.",
        "The card's key is not accepted",
        "The certificate's key is too weak, or of a kind that may not be used to log in. "
        "Choose another certificate if the card has several, otherwise order a new card "
        "through your IT contact person.",
        status_code=403,
        can_retry=True,
    ),
    "wrong_key_usage": UserMessage(
        "Fel certifikat valt",
        "Certifikatet får inte användas för inloggning. Välj kortets "
        "legitimeringscertifikat och försök igen.",
        "Wrong certificate chosen",
        "This certificate may not be used to log in. Choose the card's authentication "
        "certificate and try again.",
        status_code=403,
        can_retry=True,
    ),
    "wrong_extended_key_usage": UserMessage(
        "Fel certifikat valt",
        "Certifikatet är inte avsett för inloggning. Välj kortets legitimeringscertifikat "
        "och försök igen.",
        "Wrong certificate chosen",
        "This certificate is not meant for login. Choose the card's authentication "
        "certificate and try again.",
        status_code=403,
        can_retry=True,
    ),
    "no_hsa_id": UserMessage(
        "Certifikatet saknar HSA-id",
        "Välj certifikatet som innehåller ditt HSA-id (SITHS e-id Person HSA-id) och försök "
        "igen. " + _CARD_HELP_SV,
        "The certificate has no HSA-ID",
        "Choose the certificate that holds your HSA-ID (SITHS e-id Person HSA-id) and try "
        "again. " + _CARD_HELP_EN,
        status_code=403,
        can_retry=True,
    ),
    "malformed_hsa_id": UserMessage(
        "Ogiltigt HSA-id i certifikatet",
        "HSA-id:t i certifikatet har fel format. " + _CARD_HELP_SV,
        "Invalid HSA-ID in the certificate",
        "The HSA-ID in the certificate is malformed. " + _CARD_HELP_EN,
        status_code=403,
    ),
    "organisation_not_accepted": UserMessage(
        "Organisationen godkänns inte här",
        "Kortets HSA-id tillhör en organisation som inte kan logga in i Göteborgs Stads "
        "Åtkomsttjänst. Välj certifikatet med ditt HSA-id från Göteborgs Stad om du har ett.",
        "This organisation is not accepted here",
        "The card's HSA-ID belongs to an organisation that cannot log in to the City of "
        "Gothenburg's Access Service. Choose the certificate with your City of Gothenburg "
        "HSA-ID if you have one.",
        status_code=403,
        can_retry=True,
    ),
    "certificate_revoked": UserMessage(
        "Ditt kort är spärrat",
        "Certifikatet på ditt kort har spärrats och kan inte längre användas. Om du har "
        "hittat ett kort du anmält förlorat, eller behöver ett nytt, kontakta din "
        "IT-kontaktperson.",
        "Your card is revoked",
        "The certificate on your card has been revoked and can no longer be used. If you "
        "need a new card, contact your IT contact person.",
        status_code=403,
    ),
    "revocation_status_unknown": UserMessage(
        "Kortets status är okänd",
        "Det gick inte att bekräfta att ditt kort är giltigt (spärrtjänsten känner inte till "
        "det). " + _CARD_HELP_SV,
        "The card's status is unknown",
        "The card's validity could not be confirmed (the revocation service does not know "
        "it). " + _CARD_HELP_EN,
        status_code=403,
    ),
    "revocation_unavailable": UserMessage(
        "Kortet kunde inte kontrolleras just nu",
        "Spärrkontrollen för SITHS-kort gav inget användbart svar just nu, så ingen "
        "inloggning kan göras. Försök igen om en stund. " + _CARD_HELP_SV,
        "The card could not be checked right now",
        "The revocation check for SITHS cards gave no usable answer just now, so no login can "
        "be made. Try again in a while. " + _CARD_HELP_EN,
        status_code=503,
        can_retry=True,
    ),
    "unknown_person": UserMessage(
        "Ditt HSA-id är inte registrerat",
        "Ditt HSA-id finns inte i Åtkomsttjänstens katalog. Be din IT-kontaktperson att "
        "registrera det.",
        "Your HSA-ID is not registered",
        "Your HSA-ID is not in the Access Service's directory. Ask your IT contact person "
        "to register it.",
        status_code=403,
    ),
    "person_deactivated": UserMessage(
        "Ditt konto är avstängt",
        "Ditt HSA-id är inte längre aktivt i Åtkomsttjänsten. Kontakta din IT-kontaktperson.",
        "Your account is deactivated",
        "Your HSA-ID is no longer active in the Access Service. Contact your IT contact person.",
        status_code=403,
    ),
    "unknown_login": UserMessage(
        "Inloggningen hittades inte",
        "Gå tillbaka till systemet du vill använda och börja inloggningen därifrån.",
        "Login not found",
        "Go back to the system you want to use and start the login from there.",
        status_code=404,
    ),
    "other_browser": UserMessage(
        "Inloggningen startades i en annan webbläsare",
        "Av säkerhetsskäl måste inloggningen slutföras i samma webbläsare som den startades "
        "i. Börja om från systemet du vill använda.",
        "The login was started in another browser",
        "For security, a login must be finished in the browser that started it. Start again "
        "from the system you want to use.",
        status_code=403,
    ),
    "user_cancelled": UserMessage(
        "Inloggningen avbröts",
        "Du avbröt inloggningen. Gå tillbaka till tjänsten med knappen nedan, eller stäng "
        "fönstret.",
        "The login was cancelled",
        "You cancelled the login. Go back to the service with the button below, or close the "
        "window.",
        status_code=200,
    ),
    "login_cancelled": UserMessage(
        "Inloggningen är avbruten",
        "Den här inloggningen avbröts tidigare. Gå tillbaka till systemet och logga in igen.",
        "This login was cancelled",
        "This login was cancelled earlier. Go back to the system and log in again.",
        status_code=409,
    ),
    "expired_login": UserMessage(
        "Inloggningen tog för lång tid",
        "Tiden för inloggningen har gått ut. Gå tillbaka till systemet och logga in igen.",
        "The login took too long",
        "The time for this login ran out. Go back to the system and log in again.",
        status_code=410,
    ),
    "login_already_completed": UserMessage(
        "Inloggningen är redan klar",
        "Den här inloggningen har redan använts. Gå tillbaka till systemet och logga in "
        "igen om det behövs.",
        "The login is already finished",
        "This login has already been used. Go back to the system and log in again if needed.",
        status_code=409,
    ),
    "login_wrong_step": UserMessage(
        "Inloggningen är inte klar",
        "Välj legitimeringsmetod och legitimera dig först.",
        "The login is not finished",
        "Choose a method and identify yourself first.",
        status_code=409,
        can_retry=True,
    ),
    "expired_order": UserMessage(
        "Tiden för inloggningen gick ut",
        "QR-koden hann inte skannas i tid. Starta om och skanna den nya QR-koden.",
        "The time for the login ran out",
        "The QR code was not scanned in time. Start again and scan the new QR code.",
        status_code=410,
        can_retry=True,
    ),
    "bad_signature": UserMessage(
        "Appens underskrift kunde inte kontrolleras",
        "SITHS eID-appen skickade en underskrift som inte stämmer. Försök igen. " + _CARD_HELP_SV,
        "The app's signature could not be verified",
        "The SITHS eID app sent a signature that does not match. Try again. " + _CARD_HELP_EN,
        status_code=403,
        can_retry=True,
    ),
    "oidc_unknown_client": UserMessage(
        "Okänt system",
        "Systemet du kom ifrån är inte anslutet till Göteborgs Stads Åtkomsttjänst för "
        "OpenID Connect. Ingen inloggning har gjorts. Kontakta systemets förvaltning och uppge "
        "felkoden nedan.",
        "Unknown system",
        "The system you came from is not connected to the City of Gothenburg's Access Service "
        "for OpenID Connect. No login took place. Contact the system's administrators and "
        "quote the error code below.",
        status_code=403,
    ),
    "oidc_redirect_uri_mismatch": UserMessage(
        "Felaktig återvändningsadress",
        "Systemet du kom ifrån bad om att få svaret till en adress som inte är registrerad för "
        "det. Av säkerhetsskäl skickas du inte dit och ingen inloggning har gjorts. Kontakta "
        "systemets förvaltning och uppge felkoden nedan.",
        "Unregistered return address",
        "The system you came from asked for the answer to go to an address not registered for "
        "it. For your security you are not sent there and no login took place. Contact the "
        "system's administrators and quote the error code below.",
    ),
    "oidc_invalid_request": UserMessage(
        "Felaktig inloggningsbegäran",
        "Systemet du kom ifrån skickade en begäran som Åtkomsttjänsten inte kan ta emot. "
        "Ingen inloggning har gjorts. Kontakta systemets förvaltning och uppge felkoden nedan.",
        "Invalid login request",
        "The system you came from sent a request the Access Service cannot accept. No login "
        "took place. Contact the system's administrators and quote the error code below.",
    ),
    "oidc_invalid_logout": UserMessage(
        "Utloggningen kunde inte göras",
        "Systemet du kom ifrån skickade en utloggningsbegäran som inte kunde kontrolleras. "
        "Stäng webbläsaren för att vara säker på att du är utloggad.",
        "The logout could not be made",
        "The system you came from sent a logout request that could not be verified. Close the "
        "browser to be sure that you are logged out.",
    ),
    "saml_invalid_logout": UserMessage(
        "Utloggningen kunde inte genomföras",
        "Systemet du kom ifrån skickade ett utloggningsmeddelande som inte kunde kontrolleras. "
        "Stäng webbläsaren för att vara säker på att du är utloggad, och uppge felkoden nedan "
        "för systemets förvaltning.",
        "The logout could not be made",
        "The system you came from sent a logout message that could not be verified. Close the "
        "browser to be sure that you are logged out, and quote the error code below to the "
        "system's administrators.",
    ),
    "hsa_id_not_offered": UserMessage(
        "Ogiltigt val",
        "Välj ett av de tjänste-id som visas.",
        "Invalid choice",
        "Choose one of the service IDs shown.",
        can_retry=True,
    ),
    "request_header_too_large": UserMessage(
        "För mycket data från webbläsaren",
        "Webbläsaren skickade för mycket data med sidanropet, oftast för många eller för stora "
        "kakor (cookies). Rensa kakorna för den här webbplatsen och försök igen.",
        "Too much data from the browser",
        "The browser sent too much data with the request, usually too many or too large "
        "cookies. Clear the cookies for this site and try again.",
        status_code=431,
    ),
    "request_timeout": UserMessage(
        "Tiden gick ut",
        "Webbläsaren skickade inte hela sidanropet i tid. Försök igen.",
        "The request timed out",
        "The browser did not send the whole request in time. Try again.",
        status_code=408,
    ),
    "malformed_request": UserMessage(
        "Felaktigt sidanrop",
        "Webbläsaren skickade ett sidanrop som inte kunde läsas. Försök igen.",
        "Malformed request",
        "The browser sent a request that could not be read. Try again.",
    ),
    "directory_entry_unusable": UserMessage(
        "Dina uppgifter kan inte skickas",
        "Du är identifierad, men dina uppgifter i katalogen innehåller tecken som inte kan "
        "skickas till systemet. Kontakta din IT-kontaktperson och uppge felkoden nedan.",
        "Your details cannot be sent",
        "You are identified, but your details in the directory contain characters that "
        "cannot be sent to the system. Contact your IT contact person and quote the error "
        "code below.",
        status_code=500,
    ),
    # The SP's metadata changed while the user logged in: it no longer allows an answer.
    "sp_cannot_be_answered": UserMessage(
        "Dina uppgifter kan inte skickas säkert",
        "Du är identifierad, men systemet du kom ifrån kan inte längre ta emot dina uppgifter "
        "på ett säkert sätt (dess anslutningsuppgifter har ändrats), och de skickas aldrig "
        "osäkert. Du har inte loggats in i systemet. Kontakta systemets förvaltning och uppge "
        "felkoden nedan.",
        "Your details cannot be sent securely",
        "You are identified, but the system you came from can no longer receive your details "
        "securely (its connection details have changed), and they are never sent insecurely. "
        "You have not been logged in to the system. Contact the system's administrators and "
        "quote the error code below.",
        status_code=502,
    ),
    "service_unavailable": UserMessage(
        "Tjänsten är tillfälligt otillgänglig",
        "Åtkomsttjänsten kunde inte slutföra steget just nu. Försök igen om en stund: ladda om "
        "sidan, så görs samma steg en gång till och inloggningen fortsätter där den var.",
        "The service is temporarily unavailable",
        "The Access Service could not complete this step just now. Try again in a while: "
        "reload the page, which repeats the same step, and the login carries on where it was.",
        status_code=503,
        can_retry=True,
    ),
    "internal_error": UserMessage(
        "Något gick fel",
        "Ett oväntat fel uppstod i Åtkomsttjänsten. Ladda om sidan för att göra samma steg en "
        "gång till, eller börja om från systemet du vill använda. Uppge felkoden nedan om "
        "felet kvarstår.",
        "Something went wrong",
        "An unexpected error occurred in the Access Service. Reload the page to repeat the same "
        "step, or start again from the system you want to use. Quote the error code below if "
        "the problem remains.",
        status_code=500,
    ),
}

SAML_REQUEST_MESSAGE = UserMessage(
    "Felaktig inloggningsbegäran",
    "Systemet du kom ifrån skickade en begäran som Åtkomsttjänsten inte kan ta emot. "
    "Ingen inloggning har gjorts. Kontakta systemets förvaltning eller din IT-kontaktperson "
    "och uppge felkoden nedan.",
    "Invalid login request",
    "The system you came from sent a request the Access Service cannot accept. No login took "
    "place. Contact the system's administrators or your IT contact person and quote the "
    "error code below.",
)

UNKNOWN_SP_MESSAGE = UserMessage(
    "Okänt system",
    "Systemet du kom ifrån är inte anslutet till Göteborgs Stads Åtkomsttjänst. Ingen "
    "inloggning har gjorts. Kontakta systemets förvaltning.",
    "Unknown system",
    "The system you came from is not connected to the City of Gothenburg's Access Service. "
    "No login took place. Contact the system's administrators.",
    status_code=403,
)

FALLBACK = UserMessage(
    "Något gick fel",
    "Inloggningen kunde inte genomföras. Försök igen från systemet du vill använda.",
    "Something went wrong",
    "The login could not be completed. Try again from the system you want to use.",
    status_code=400,
)


class Topic(StrEnum):
    """Where a refusal was met, which picks how its codes are worded to the user."""

    # A step of the user's own login (card, app, choice, the pages): each code has its page.
    LOGIN = "login"
    # An application's AuthnRequest refused before it could be answered.
    SAML_REQUEST = "saml_request"
    # A finished login whose Response may not be sent to the application.
    SAML_RESPONSE = "saml_response"
    # An application's logout message refused.
    SAML_LOGOUT = "saml_logout"


# For a topic whose codes mostly share one page: the page of every code not listed.
OTHERWISE = "*"

# The one table from a refusal to the user's page: by topic, then by reason code. A protocol
# message's codes mostly share one page (the user can do nothing about which check failed;
# the code on the page tells the application's administrators).
PAGES: dict[Topic, dict[str, UserMessage]] = {
    Topic.LOGIN: MESSAGES,
    Topic.SAML_REQUEST: {"unknown_sp": UNKNOWN_SP_MESSAGE, OTHERWISE: SAML_REQUEST_MESSAGE},
    Topic.SAML_RESPONSE: {
        "directory_entry_unusable": MESSAGES["directory_entry_unusable"],
        OTHERWISE: MESSAGES["sp_cannot_be_answered"],
    },
    Topic.SAML_LOGOUT: {OTHERWISE: MESSAGES["saml_invalid_logout"]},
}


def page_for(topic: Topic, reason: str) -> UserMessage:
    """The page for a refusal with code ``reason`` met in ``topic`` (:data:`FALLBACK` for a
    code the table does not know)."""
    pages = PAGES[topic]
    return pages.get(reason) or pages.get(OTHERWISE) or FALLBACK


def message_for(reason: str) -> UserMessage:
    """The page for a code of the user's own login (:attr:`Topic.LOGIN`)."""
    return page_for(Topic.LOGIN, reason)

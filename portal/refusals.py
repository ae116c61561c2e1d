"""One refusal model for the portal: :class:`Refused` carries a stable reason code (for
integrators, the audit trail and tests) and the words for people, Swedish first with English
beside. Pages, the JSON API and the CLI map a refusal from here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Words:
    sv: str
    en: str
    status_code: int = 400


MESSAGES: dict[str, Words] = {
    "card_number_format": Words(
        "Kortnumret ska vara 19 siffror och börja med 9752 (mellanslag går bra).",
        "The card number must be 19 digits beginning with 9752 (spaces are fine).",
    ),
    "card_issuer_unknown": Words(
        "Välj vem som har utfärdat kortet: Inera eller ett av SITHS-ombuden i listan.",
        "Choose who issued the card: Inera or one of the SITHS agents in the list.",
    ),
    "valid_to_format": Words(
        "Giltig till ska vara ett datum (ÅÅÅÅ-MM-DD).",
        "Valid to must be a date (YYYY-MM-DD).",
    ),
    "valid_to_past": Words(
        "Giltig till måste ligga efter dagens datum.",
        "Valid to must lie after today.",
    ),
    "valid_to_too_late": Words(
        "Giltig till kan ligga högst två år fram, kortets egen livslängd.",
        "Valid to can lie at most two years ahead, the card's own lifetime.",
    ),
    "name_missing": Words(
        "Förnamn och efternamn måste fyllas i.", "Given name and surname are required."
    ),
    "mail_format": Words(
        "E-postadressen ser inte ut som en e-postadress.",
        "The e-mail address does not look like an e-mail address.",
    ),
    "windows_account_format": Words(
        "Windows-kontot skrivs DOMÄN\\namn, t.ex. OMSORGVAST\\anna.svensson.",
        "The Windows account is written DOMAIN\\name, e.g. OMSORGVAST\\anna.svensson.",
    ),
    "control_character": Words(
        "Ett fält innehåller ett styrtecken (t.ex. tabb eller radbrytning). Ta bort det.",
        "A field contains a control character (e.g. tab or line break). Remove it.",
    ),
    "card_already_ordered": Words(
        "Det finns redan en beställning för det här kortet.",
        "There is already an order for this card.",
        409,
    ),
    "recipient_has_hsa_id": Words(
        "Mottagaren har redan ett HSA-id i Göteborgs Stad eller en pågående beställning.",
        "The recipient already has an HSA-ID at the City of Gothenburg or an order under way.",
        409,
    ),
    "csv_header": Words(
        "Filens första rad ska ha kolumnerna card_issuer, card_number, valid_to, given_name, "
        "surname, mail, windows_account.",
        "The file's first line must have the columns card_issuer, card_number, valid_to, "
        "given_name, surname, mail, windows_account.",
    ),
    "csv_encoding": Words("Spara filen som UTF-8.", "Save the file as UTF-8."),
    "csv_fields": Words(
        "Raden har fler fält än kolumner.", "The line has more fields than columns."
    ),
    "csv_empty": Words("Filen innehåller inga beställningar.", "The file contains no orders."),
    "wrong_state": Words(
        "Beställningen är inte i det steg som åtgärden gäller; ladda om sidan.",
        "The order is not at the step this action is for; reload the page.",
        409,
    ),
    "concurrent_change": Words(
        "En annan administratör hann före och har redan ändrat beställningen. Ladda om sidan "
        "och se vad som gjorts.",
        "Another administrator got there first and has already changed the order. Reload the "
        "page to see what was done.",
        409,
    ),
    "order_not_found": Words("Beställningen finns inte.", "The order does not exist.", 404),
    "link_unknown": Words(
        "Länken är okänd. Kontrollera att hela länken från e-postmeddelandet kom med.",
        "The link is unknown. Check that the whole link from the e-mail was used.",
        404,
    ),
    "link_used": Words(
        "Länken har redan använts; certifikatet är utfärdat. Kontakta din IT-kontaktperson om "
        "något är fel.",
        "The link has been used already; the certificate has been issued. Contact your IT "
        "contact person if something is wrong.",
        410,
    ),
    "link_expired": Words(
        "Länken har gått ut. Be din IT-kontaktperson om en ny.",
        "The link has expired. Ask your IT contact person for a new one.",
        410,
    ),
    "no_challenge": Words(
        "Hämta en ny utmaning och försök igen.", "Fetch a new challenge and try again."
    ),
    "card_not_proved": Words(
        "Kortet kunde inte visa att det är ditt: underskriften stämmer inte med kortets "
        "certifikat.",
        "The card could not prove it is yours: the signature does not match the card's "
        "certificate.",
        403,
    ),
    "card_certificate_refused": Words(
        "Kortets certifikat godtas inte (samma kontroll som vid inloggning).",
        "The card's certificate is not accepted (the same check as at login).",
        403,
    ),
    "card_mismatch": Words(
        "Kortet stämmer inte med beställningen (kortnummer, organisation eller namn).",
        "The card does not match the order (card number, organisation or name).",
        403,
    ),
    "card_has_goteborg": Words(
        "Kortet har redan ett certifikat från Göteborgs Stad.",
        "The card already carries a City of Gothenburg certificate.",
        409,
    ),
    "card_expires_first": Words(
        "Kortets eget certifikat går ut före beställningens giltighetsdatum. Beställ med ett "
        "tidigare datum.",
        "The card's own certificate expires before the order's valid-to date. Order with an "
        "earlier date.",
        409,
    ),
    "new_key_not_proved": Words(
        "Den nya nyckeln kunde inte visa att den finns på kortet.",
        "The new key could not prove that it is on the card.",
        403,
    ),
    "not_allowed": Words(
        "Du har inte behörighet till den här sidan i portalen.",
        "You have no permission for this page of the portal.",
        403,
    ),
    "csrf": Words(
        "Formuläret har gått ut. Ladda om sidan och försök igen.",
        "The form has expired. Reload the page and try again.",
        403,
    ),
    "login_required": Words(
        "Logga in med SITHS-kort för att använda portalen.",
        "Log in with a SITHS card to use the portal.",
        401,
    ),
    "login_not_configured": Words(
        "Inloggningen är inte inställd i portalen (OIDC-klienthemlighet saknas).",
        "Login is not set up in the portal (no OIDC client secret).",
        503,
    ),
    "idp_unavailable": Words(
        "Åtkomsttjänsten går inte att nå just nu. Försök igen om en stund.",
        "The access service cannot be reached right now. Try again in a while.",
        502,
    ),
    "login_failed": Words(
        "Inloggningen kunde inte slutföras. Börja om från startsidan.",
        "The login could not be completed. Start again from the start page.",
        403,
    ),
    "bad_request": Words(
        "Kortprogrammets begäran kunde inte läsas.", "The card software's request was unreadable."
    ),
    "treserva_not_configured": Words(
        "Portalen är inte kopplad till Treserva; lägg in HSA-ID:t på Treservas "
        "administrationssida.",
        "The portal is not connected to Treserva; add the HSA-ID on Treserva's administration "
        "page.",
        409,
    ),
    "treserva_unavailable": Words(
        "Treserva går inte att nå just nu. Försök igen om en stund.",
        "Treserva cannot be reached right now. Try again in a while.",
        502,
    ),
    "treserva_refused": Words(
        "Treserva godtog inte ändringen.", "Treserva did not accept the change.", 409
    ),
    "no_windows_account": Words(
        "Beställningen saknar Windows-konto i Treserva; lägg in HSA-ID:t på Treservas "
        "administrationssida.",
        "The order has no Windows account in Treserva; add the HSA-ID on Treserva's "
        "administration page.",
        409,
    ),
    "ticket_open": Words(
        "Det finns redan ett öppet ärende för flytt av behörigheter.",
        "There is already an open ticket for moving the permissions.",
        409,
    ),
    "not_found": Words("Sidan finns inte.", "Page not found.", 404),
    "upload_too_large": Words(
        "Filen är för stor. Dela upp den.", "The file is too large. Split it.", 413
    ),
}

FALLBACK = Words("Något gick fel.", "Something went wrong.", 500)


class Refused(Exception):
    """The portal refuses an input or an action. ``reason`` is a key of :data:`MESSAGES`;
    ``detail`` says what exactly (a field, a line); ``line`` is a CSV line number if any."""

    def __init__(self, reason: str, detail: str = "", *, line: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.line = line

    @property
    def words(self) -> Words:
        return MESSAGES.get(self.reason, FALLBACK)

    def as_dict(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "detail": self.detail,
            "line": self.line,
            "sv": self.words.sv,
            "en": self.words.en,
        }

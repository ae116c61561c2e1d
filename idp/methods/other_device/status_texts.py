"""What the browser says for each order status and hint code, Swedish first."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StatusText:
    sv: str
    en: str


HINT_TEXTS: dict[str, StatusText] = {
    "outstandingTransaction": StatusText(
        "Starta SITHS eID-appen och skanna QR-koden.",
        "Start the SITHS eID app and scan the QR code.",
    ),
    "started": StatusText("Söker efter SITHS eID-appen …", "Looking for the SITHS eID app …"),
    "userSign": StatusText(
        "Skriv in din säkerhetskod i appen.", "Enter your security code in the app."
    ),
    "complete": StatusText("Klart! Du skickas vidare.", "Done! Taking you onwards."),
    "expiredTransaction": StatusText(
        "Tiden för inloggningen gick ut. Starta om och försök igen.",
        "The time for the login ran out. Start again and try once more.",
    ),
    "certificateErr": StatusText(
        "Kortet i appen kunde inte användas för inloggning.",
        "The card in the app could not be used to log in.",
    ),
    "userCancel": StatusText(
        "Inloggningen avbröts i appen.", "The login was cancelled in the app."
    ),
    "cancelled": StatusText("Inloggningen avbröts.", "The login was cancelled."),
}

"""``SithsEidApp``: the SITHS eID app's side of "SITHS eID på annan enhet", over HTTPS.

It does what the phone app does — scan the QR code (or take the autoStartToken), show the text
to sign, have the card sign exactly ``dataToSign``, send signature and certificate — and, for
tests, the things a broken or hostile app might do instead (see :meth:`SithsEidApp.sign`).
Every request is a real HTTPS request checked against ``ca_file``; nothing is faked.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization

from siths_testkit.app_simulator.protocol import (
    API_PREFIX,
    AppApiError,
    OrderState,
    ScanResult,
    SignResult,
    Submission,
)
from siths_testkit.app_simulator.token import Card

__all__ = ["SithsEidApp"]


class SithsEidApp:
    """The app, talking to the IdP at ``base_url`` (e.g. ``https://localhost:8443``).

    ``ca_file`` is the CA bundle that the IdP's TLS certificate must chain to (``None``: the
    system's). ``card`` is the card in the app; it may be ``None`` until the user has unlocked
    one, since only :meth:`sign` needs it. Every method raises :class:`AppApiError` when the IdP
    refuses, with the API's ``errorCode``, and ``httpx.HTTPError`` when it cannot be reached.
    Use it as a context manager (or call :meth:`close`) to release the connection pool.
    One instance may be used from one thread at a time.
    """

    def __init__(
        self,
        base_url: str,
        ca_file: Path | None,
        card: Card | None = None,
        *,
        timeout: float = 15.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.card = card
        verify = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX,
            verify=verify,
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": "SITHS-eID-app-simulator/1"},
        )

    def __enter__(self) -> SithsEidApp:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self._http.post(path, json=body)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.is_success and isinstance(answer, dict):
            return answer
        if isinstance(answer, dict) and "errorCode" in answer:
            raise AppApiError(
                response.status_code, str(answer["errorCode"]), str(answer.get("details", ""))
            )
        # FastAPI's own validation errors (422) and anything unexpected end up here.
        raise AppApiError(response.status_code, f"http{response.status_code}", response.text[:500])

    def scan(self, qr_content: str) -> ScanResult:
        """Claim the order whose QR code was scanned (``sithseid.<token>.<seconds>.<code>``)."""
        return ScanResult.from_json(self._post("/scan", {"qrCode": qr_content}))

    def scan_auto_start(self, auto_start_token: str) -> ScanResult:
        """Claim the order the app was started for on this device (the autoStartToken)."""
        return ScanResult.from_json(self._post("/scan", {"autoStartToken": auto_start_token}))

    def sign(
        self,
        scan: ScanResult,
        *,
        card: Card | None = None,
        data: bytes | None = None,
        signer: Card | None = None,
        certificates: Sequence[str] | None = None,
        replay: Submission | None = None,
    ) -> SignResult:
        """Sign the scanned order's ``dataToSign`` with the card and send it; the order completes.

        ``card`` overrides the app's card for this call. An honest app passes nothing else;
        the other arguments are ways to misbehave, for tests:

        - ``data``: sign these bytes instead of ``dataToSign``;
        - ``signer``: let this (other) card's key sign, while sending ``card``'s certificate;
        - ``certificates``: send these PEM certificates instead of the card's;
        - ``replay``: send this earlier :class:`Submission` (e.g. from another order) verbatim,
          signing nothing.

        Returns the order's new state and the :class:`Submission` that was sent.
        """
        if replay is not None:
            submission = replay
        else:
            holder = card or self.card
            if holder is None:
                raise ValueError("the app has no card to sign with")
            algorithm, signature = (signer or holder).sign(
                scan.data_to_sign if data is None else data
            )
            sent = certificates if certificates is not None else [_pem(holder)]
            submission = Submission(algorithm, signature, tuple(sent))
        answer = self._post("/sign", submission.to_json(scan))
        return SignResult(OrderState.from_json(answer), submission)

    def cancel(self, scan: ScanResult) -> OrderState:
        """The user cancelled in the app: the order fails with ``userCancel``."""
        answer = self._post("/cancel", {"orderRef": scan.order_ref, "signToken": scan.sign_token})
        return OrderState.from_json(answer)


def _pem(card: Card) -> str:
    return card.certificate().public_bytes(serialization.Encoding.PEM).decode("ascii")

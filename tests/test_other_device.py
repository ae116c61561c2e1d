"""Issue 3, "SITHS eID på annan enhet", over real sockets: browser, app and SP against the IdP.

The browser is an httpx client with its own cookie jar; it reads the QR code off the page by
decoding the image (:mod:`tests.helpers.qr_reader`). The app is
:class:`siths_testkit.app_simulator.SithsEidApp`, whose card is a SoftHSM2 token: every signature is
made on a token through PKCS#11. The SP is the pysaml2 test SP of ``conftest``. Every refusal
asserts the API's ``errorCode`` and that the browser never gets a success: its collect never says
``complete`` and ``/login/continue`` hands it no SAML Response.
"""

from __future__ import annotations

import base64
import datetime as dt
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from idp.web.messages import message_for
from siths_testkit.app_simulator import AppApiError, ScanResult, SithsEidApp, SoftHsmCard
from siths_testkit.login_driver import PemCard
from siths_testkit.pki.softhsm import WrongPin
from tests.conftest import IdpUnderTest
from tests.helpers import saml_sp
from tests.helpers.card_defects import FINDINGS, Defect
from tests.helpers.flows import follow, open_login, posted_form
from tests.helpers.qr_reader import read_qr_image, read_qr_on_page
from tests.helpers.support import assert_no_success_response, browser, parse_page, reason_code
from tests.helpers.token_cards import PIN, TokenLab

SAMBI_HSA_ID = "http://sambi.se/attributes/1/employeeHsaId"
EID_HSA_ID = "urn:oid:1.2.752.29.6.2.1"
ANNA, BERTIL = "SE2120001355-E0001", "SE2120001355-E0002"
CROWD_SIZE = 20
CROWD_THREADS = 8


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(idp: IdpUnderTest, tmp_path_factory: pytest.TempPathFactory) -> TokenLab:
    return TokenLab(idp.pki, tmp_path_factory.mktemp("softhsm"))


@pytest.fixture(scope="module")
def anna(lab: TokenLab) -> SoftHsmCard:
    return lab.card("anna", ANNA, "Anna", "Andersson")


@pytest.fixture(scope="module")
def bertil(lab: TokenLab) -> SoftHsmCard:
    return lab.card("bertil", BERTIL, "Bertil", "Berg")


@pytest.fixture
def app(idp: IdpUnderTest, anna: SoftHsmCard) -> Iterator[SithsEidApp]:
    with SithsEidApp(idp.base_url, idp.ca_file, anna) as simulated:
        yield simulated


# --- the browser's steps --------------------------------------------------------------------


@dataclass
class OtherDeviceLogin:
    """A browser that chose "SITHS eID på annan enhet" and is looking at the QR page."""

    client: httpx.Client
    idp: IdpUnderTest
    sp: saml_sp.TestServiceProvider
    request_id: str
    ref: str
    page: httpx.Response

    def qr(self) -> str:
        """The QR code on the page as first shown, read from its image."""
        return read_qr_on_page(self.page.text)

    def collect(self) -> dict:
        response = self.client.get(f"{self.idp.base_url}/login/other-device/collect?ref={self.ref}")
        assert response.headers["cache-control"] == "no-store"
        return response.json()

    def current_qr(self) -> str:
        """The QR code as it is now (the page's script swaps in each new one), from its image."""
        view = self.collect()
        assert view["status"] == "pending" and view["qr"], view
        return read_qr_image(view["qr"])

    def auto_start_token(self) -> str:
        href = parse_page(self.page.text).links["autostart"]
        assert href.startswith("sithseid:///?")
        return urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)["autostarttoken"][0]

    def finish(self) -> dict[str, list[str]]:
        """Collect says complete; follow ``next`` to the SP and return what the SP accepted."""
        view = self.collect()
        assert view["status"] == "complete", view
        assert view["next"] == f"/login/continue?ref={self.ref}"
        final = follow(
            self.client, self.client.get(self.idp.base_url + view["next"]), self.idp.base_url
        )
        action, fields = posted_form(final)
        assert action == self.sp.acs_url
        return self.sp.parse(fields["SAMLResponse"], self.request_id).ava

    def assert_no_success(self) -> dict:
        """The browser cannot finish: collect is not complete and continue gives no Response."""
        view = self.collect()
        assert view["status"] != "complete" and view["next"] is None, view
        page = self.client.get(f"{self.idp.base_url}/login/continue?ref={self.ref}")
        assert page.status_code >= 400, page.text[:300]
        assert_no_success_response(page.text)  # at most a failure status for the SP
        return view


@contextmanager
def other_device_login(
    idp: IdpUnderTest, sp: saml_sp.TestServiceProvider | None = None
) -> Iterator[OtherDeviceLogin]:
    sp = sp or idp.sp
    login_url, request_id = sp.login_url()
    with browser(idp.ca_file) as client:
        chooser = open_login(client, login_url, idp.base_url)
        assert chooser.status_code == 200, chooser.text[:500]
        href = parse_page(chooser.text).links["method-other-device"]
        page = client.get(idp.base_url + href)
        assert page.status_code == 200, page.text[:500]
        ref = urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)["ref"][0]
        yield OtherDeviceLogin(client, idp, sp, request_id, ref, page)


def refused(call: Callable[[], object], error_code: str, status_code: int) -> AppApiError:
    """Run ``call``; it must be refused by the app API with ``error_code``."""
    with pytest.raises(AppApiError) as caught:
        call()
    assert caught.value.error_code == error_code, caught.value
    assert caught.value.status_code == status_code, caught.value
    return caught.value


def audit_rows(idp: IdpUnderTest) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(idp.database_file()) as connection:
        return connection.execute(
            "SELECT event, outcome, reason, detail FROM audit_events ORDER BY id"
        ).fetchall()


# --- logins that work -----------------------------------------------------------------------


def test_sp_login_finishes_through_the_app_signing_on_a_token(
    idp: IdpUnderTest, app: SithsEidApp, anna: SoftHsmCard
) -> None:
    with other_device_login(idp) as login:
        assert "SITHS eID på annan enhet" in login.page.text
        qr = login.qr()
        assert qr.startswith("sithseid.")
        scan = app.scan(qr)
        # What the app shows before asking for the PIN names the service being logged in to.
        assert scan.user_visible_data.startswith("Inloggning till ")
        assert scan.user_visible_data.endswith("via Göteborgs Stads Åtkomsttjänst")
        assert login.collect()["hintCode"] == "userSign"  # the browser sees the app has it
        result = app.sign(scan)
        assert result.state.status == "complete"
        assert result.submission.algorithm == "rsa-pkcs1-sha256"
        ava = login.finish()
    assert ava[SAMBI_HSA_ID] == [anna.hsa_id] == [ANNA]
    assert ava["http://sambi.se/attributes/1/givenName"] == ["Anna"]
    assert any(
        row[:3] == ("login.method", "success", "") and scan.order_ref in row[3]
        for row in audit_rows(idp)
    )


def test_autostart_on_the_same_device_logs_in(idp: IdpUnderTest, bertil: SoftHsmCard) -> None:
    with (
        other_device_login(idp, idp.eid_sp) as login,
        SithsEidApp(idp.base_url, idp.ca_file, bertil) as app,
    ):
        scan = app.scan_auto_start(login.auto_start_token())
        app.sign(scan)
        ava = login.finish()
    assert ava[EID_HSA_ID] == [BERTIL]


def test_ec_card_signs_with_ecdsa_and_logs_in(idp: IdpUnderTest, lab: TokenLab) -> None:
    card = lab.card("anna-ec", ANNA, "Anna", "Andersson", key_type="ec")
    with other_device_login(idp) as login, SithsEidApp(idp.base_url, idp.ca_file, card) as app:
        result = app.sign(app.scan(login.qr()))
        assert result.submission.algorithm == "ecdsa-sha256"
        assert login.finish()[SAMBI_HSA_ID] == [ANNA]


def test_cards_issued_and_used_from_the_command_line(idp: IdpUnderTest, tmp_path: Path) -> None:
    """The IT contact's ``idp card issue --token`` and the tester's ``idp app login``."""
    config = tmp_path / "softhsm2.conf"
    issued = idp.idp_cli(
        "card", "issue", "--hsa-id", ANNA, "--given-name", "Anna", "--surname", "Andersson",
        "--token", "anna-cli", "--pin", "4321", "--softhsm-conf", str(config),
        "--pki", str(idp.pki.directory), "--out", str(tmp_path),
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    assert "generated on the token, not extractable" in issued.stdout
    assert not list(tmp_path.glob("*.key.pem")) and not list(tmp_path.glob("*.p12"))
    app_cli = ("app", "login", "--token", "anna-cli", "--softhsm-conf", str(config))
    app_cli += ("--base-url", idp.base_url, "--ca", str(idp.ca_file))

    with other_device_login(idp) as login:
        # The app on this device, started by the page's link, with a mistyped PIN.
        wrong = idp.idp_cli(*app_cli, "--autostart", login.auto_start_token(), "--pin", "0000")
        assert wrong.returncode == 1
        assert "The card refused: the PIN for card 'anna-cli' is wrong" in wrong.stderr
        # The user gave up in the app: the order is cancelled and the browser is not let in.
        assert login.assert_no_success()["hintCode"] == "userCancel"

    with other_device_login(idp) as login:
        done = idp.idp_cli(*app_cli, "--qr", login.qr(), "--pin", "4321")
        assert done.returncode == 0, done.stderr
        assert "the order is complete" in done.stdout
        assert login.finish()[SAMBI_HSA_ID] == [ANNA]


# --- the QR code ----------------------------------------------------------------------------


def test_stale_qr_code_is_refused_but_the_current_one_works(
    idp: IdpUnderTest, app: SithsEidApp
) -> None:
    with other_device_login(idp) as login:
        photographed = login.qr()
        time.sleep(1.1)
        assert login.current_qr() != photographed  # it changes every second
        time.sleep(5.0)  # relayed to someone else's phone: more than 5 s old when scanned
        refused(lambda: app.scan(photographed), "staleQrCode", 400)
        login.assert_no_success()
        # The stale scan claimed nothing: the code on the screen now still works.
        app.sign(app.scan(login.current_qr()))
        assert login.finish()[SAMBI_HSA_ID] == [ANNA]


def test_forged_qr_auth_code_is_refused(idp: IdpUnderTest, app: SithsEidApp) -> None:
    with other_device_login(idp) as login:
        prefix, token, seconds, code = login.qr().split(".")
        flipped = ("0" if code[0] != "0" else "1") + code[1:]
        refused(lambda: app.scan(f"{prefix}.{token}.{seconds}.{flipped}"), "invalidQrCode", 400)
        # Claiming another second with the same code is a forgery too.
        later = f"{prefix}.{token}.{int(seconds) + 1}.{code}"
        refused(lambda: app.scan(later), "invalidQrCode", 400)
        login.assert_no_success()


def test_unknown_order_is_refused(idp: IdpUnderTest, app: SithsEidApp) -> None:
    with other_device_login(idp) as login:
        _prefix, _token, seconds, code = login.qr().split(".")
        # An unknown qrStartToken is answered like a forged code: nothing about orders leaks.
        refused(lambda: app.scan(f"sithseid.{'x' * 32}.{seconds}.{code}"), "invalidQrCode", 400)
        refused(
            lambda: app.scan_auto_start("00000000-0000-4000-8000-000000000000"), "notFound", 404
        )
        made_up = ScanResult("no-such-order", "no-such-token", b"x", "", ("rsa-pkcs1-sha256",))
        refused(lambda: app.sign(made_up), "notFound", 404)
        refused(lambda: app.scan("https://example.invalid/not-our-code"), "invalidParameters", 400)
        login.assert_no_success()


# --- the order's life -----------------------------------------------------------------------


def test_expired_order_is_refused(idp: IdpUnderTest, app: SithsEidApp) -> None:
    with other_device_login(idp) as login:
        qr = login.qr()
        scan = app.scan(login.current_qr())
        with sqlite3.connect(idp.database_file()) as connection:
            expired = connection.execute(
                "UPDATE orders SET expires_at = '2020-01-01 00:00:00.000000'"
                " WHERE pending_login_id = ?",
                (login.ref,),
            )
            assert expired.rowcount == 1
        refused(lambda: app.sign(scan), "expiredTransaction", 410)
        refused(lambda: app.scan(qr), "expiredTransaction", 410)
        view = login.assert_no_success()
        assert (view["status"], view["hintCode"]) == ("failed", "expiredTransaction")


def test_completed_order_cannot_be_completed_again(
    idp: IdpUnderTest, app: SithsEidApp, bertil: SoftHsmCard
) -> None:
    with other_device_login(idp) as login:
        qr = login.qr()
        scan = app.scan(qr)
        app.sign(scan)
        refused(lambda: app.sign(scan), "alreadyFinished", 409)
        refused(lambda: app.sign(scan, card=bertil), "alreadyFinished", 409)
        refused(lambda: app.scan(qr), "alreadyFinished", 409)
        refused(lambda: app.cancel(scan), "alreadyFinished", 409)
        assert login.finish()[SAMBI_HSA_ID] == [ANNA]  # still Anna, not Bertil
        # The same browser may have the answer again (tests/test_login_retry.py): still Anna's.
        again = login.client.get(f"{idp.base_url}/login/continue?ref={login.ref}")
        _action, fields = posted_form(again)
        repeated = base64.b64decode(fields["SAMLResponse"]).decode("utf-8")
        assert ANNA in repeated
        assert BERTIL not in repeated


def test_second_app_cannot_take_an_order_already_scanned(
    idp: IdpUnderTest, app: SithsEidApp, bertil: SoftHsmCard
) -> None:
    with (
        other_device_login(idp) as login,
        SithsEidApp(idp.base_url, idp.ca_file, bertil) as intruder,
    ):
        # Two phones pointed at the same screen: both read the same, fresh code.
        qr = login.qr()
        scan = app.scan(qr)
        assert login.collect()["qr"] is None  # the page stops showing it once it is taken
        refused(lambda: intruder.scan(qr), "alreadyInProgress", 409)
        refused(
            lambda: intruder.scan_auto_start(login.auto_start_token()), "alreadyInProgress", 409
        )
        # Knowing the orderRef is not enough: only the sign token of the first scan counts.
        guessed = ScanResult(scan.order_ref, "guessed", scan.data_to_sign, "", ())
        refused(lambda: intruder.sign(guessed), "unauthorized", 403)
        refused(lambda: intruder.cancel(guessed), "unauthorized", 403)
        assert login.collect()["status"] == "pending"
        app.sign(scan)
        assert login.finish()[SAMBI_HSA_ID] == [ANNA]


def test_user_cancels_in_the_browser(idp: IdpUnderTest, app: SithsEidApp) -> None:
    with other_device_login(idp) as login:
        qr = login.qr()
        scan = app.scan(qr)
        cancelled = login.client.post(
            f"{idp.base_url}/login/other-device/cancel", data={"ref": login.ref}
        )
        # The login ends: a page saying so, with the way back to the service (issue 15).
        assert cancelled.status_code == 200, cancelled.text
        assert reason_code(cancelled.text) == "user_cancelled"
        assert 'id="back-to-service"' in cancelled.text
        refused(lambda: app.sign(scan), "alreadyFinished", 409)
        refused(lambda: app.scan(qr), "alreadyFinished", 409)
        view = login.assert_no_success()
        assert (view["status"], view["hintCode"]) == ("failed", "login_cancelled")


def test_user_cancels_in_the_app(idp: IdpUnderTest, app: SithsEidApp) -> None:
    with other_device_login(idp) as login:
        scan = app.scan(login.qr())
        state = app.cancel(scan)
        assert (state.status, state.hint_code) == ("failed", "userCancel")
        refused(lambda: app.sign(scan), "alreadyFinished", 409)
        view = login.assert_no_success()
        assert (view["status"], view["hintCode"]) == ("failed", "userCancel")
        assert "avbröts i appen" in view["message"]["sv"]


def test_collect_from_another_browser_is_refused(idp: IdpUnderTest, app: SithsEidApp) -> None:
    with other_device_login(idp) as login:
        with browser(idp.ca_file) as other:
            stolen = other.get(f"{idp.base_url}/login/other-device/collect?ref={login.ref}")
            assert stolen.status_code >= 400
            assert stolen.json()["reason"] == "other_browser"
            assert stolen.json()["qr"] is None  # no QR code for someone else's screen
            page = other.get(f"{idp.base_url}/login/other-device?ref={login.ref}")
            assert reason_code(page.text) == "other_browser"
            app.sign(app.scan(login.qr()))
            # Even once the app has signed, the other browser gets nothing.
            after = other.get(f"{idp.base_url}/login/other-device/collect?ref={login.ref}")
            assert after.json()["status"] == "failed" and after.json()["next"] is None
            taken = other.get(f"{idp.base_url}/login/continue?ref={login.ref}")
            assert reason_code(taken.text) == "other_browser"
            assert_no_success_response(taken.text)  # at most a failure status for the SP
        assert login.finish()[SAMBI_HSA_ID] == [ANNA]


# --- what the app sends ---------------------------------------------------------------------


def assert_signature_refused(login: OtherDeviceLogin, scan: ScanResult, reason: str) -> dict:
    """The order failed with ``reason``, the browser shows it, and the audit log names it."""
    view = login.assert_no_success()
    assert (view["status"], view["hintCode"], view["reason"]) == (
        "failed",
        "certificateErr",
        reason,
    )
    assert any(
        row[:3] == ("login.method", "failure", reason) and scan.order_ref in row[3]
        for row in audit_rows(login.idp)
    ), audit_rows(login.idp)[-3:]
    return view


def test_signature_over_other_bytes_is_refused(idp: IdpUnderTest, app: SithsEidApp) -> None:
    with other_device_login(idp) as login:
        scan = app.scan(login.qr())
        other = scan.data_to_sign.replace(b"SITHS", b"STHIS")
        refused(lambda: app.sign(scan, data=other), "invalidSignature", 400)
        assert_signature_refused(login, scan, "bad_signature")


def test_signature_by_another_cards_key_is_refused(
    idp: IdpUnderTest, app: SithsEidApp, bertil: SoftHsmCard
) -> None:
    with other_device_login(idp) as login:
        scan = app.scan(login.qr())
        refused(lambda: app.sign(scan, signer=bertil), "invalidSignature", 400)
        assert_signature_refused(login, scan, "bad_signature")


def test_someone_elses_certificate_is_refused(
    idp: IdpUnderTest, app: SithsEidApp, bertil: SoftHsmCard
) -> None:
    # Anna's card signs, but the app claims to be Bertil: the signature does not match.
    with other_device_login(idp) as login:
        scan = app.scan(login.qr())
        refused(
            lambda: app.sign(scan, certificates=[bertil.certificate_pem()]),
            "invalidSignature",
            400,
        )
        assert_signature_refused(login, scan, "bad_signature")


@pytest.mark.parametrize(
    ("kind", "reason", "words"),
    [
        ("expired", "certificate_expired", "gått ut"),
        ("forged", "untrusted_issuer", "inte utfärdat av SITHS"),
    ],
)
def test_card_failing_the_certificate_checks_is_refused(
    idp: IdpUnderTest, lab: TokenLab, kind: str, reason: str, words: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    card = lab.card(
        f"anna-{kind}",
        ANNA,
        "Anna",
        "Andersson",
        forged=kind == "forged",
        not_before=now - dt.timedelta(days=800) if kind == "expired" else None,
        not_after=now - dt.timedelta(days=1) if kind == "expired" else None,
    )
    with other_device_login(idp) as login, SithsEidApp(idp.base_url, idp.ca_file, card) as app:
        scan = app.scan(login.qr())
        error = refused(lambda: app.sign(scan), "certificateErr", 400)
        assert reason in error.details
        view = assert_signature_refused(login, scan, reason)
        # The browser says why, in Swedish first.
        assert view["message"]["sv"].startswith("Kortet i appen kunde inte användas")
        assert words in view["message"]["sv"]


@pytest.mark.parametrize("defect", FINDINGS, ids=lambda defect: defect.name)
def test_card_with_a_weak_key_or_a_wrong_profile_is_refused(
    idp: IdpUnderTest, tmp_path: Path, defect: Defect
) -> None:
    # Anna's HSA-ID, from the real CA, OCSP good, and a correct signature by the card's key:
    # only the defect stands between the app and Anna's login.
    issued = defect.issue(idp.pki, tmp_path)
    card = PemCard(issued.cert, issued.key)
    with other_device_login(idp) as login, SithsEidApp(idp.base_url, idp.ca_file, card) as app:
        scan = app.scan(login.qr())
        error = refused(lambda: app.sign(scan), "certificateErr", 400)
        assert error.details.startswith(f"{defect.reason}: "), error
        view = assert_signature_refused(login, scan, defect.reason)
        page = message_for(defect.reason)
        assert f"{page.title_sv}: {page.text_sv}" in view["message"]["sv"]
        assert f"{page.title_en}: {page.text_en}" in view["message"]["en"]


def test_completed_signature_replayed_into_another_order_is_refused(
    idp: IdpUnderTest, app: SithsEidApp, bertil: SoftHsmCard
) -> None:
    with other_device_login(idp) as victim:
        signed = app.sign(app.scan(victim.qr()))
        assert victim.finish()[SAMBI_HSA_ID] == [ANNA]
    # Someone who captured Anna's signature and certificate tries them on their own login.
    with (
        other_device_login(idp) as attacker,
        SithsEidApp(idp.base_url, idp.ca_file, bertil) as attacker_app,
    ):
        scan = attacker_app.scan(attacker.qr())
        refused(lambda: attacker_app.sign(scan, replay=signed.submission), "invalidSignature", 400)
        assert_signature_refused(attacker, scan, "bad_signature")


def test_wrong_pin_on_the_token_gets_no_login(
    idp: IdpUnderTest, lab: TokenLab, anna: SoftHsmCard
) -> None:
    with other_device_login(idp) as login, SithsEidApp(idp.base_url, idp.ca_file) as app:
        scan = app.scan(login.qr())
        with pytest.raises(WrongPin, match="PIN"):
            lab.open(anna.token_label, pin=PIN[::-1])
        # No card unlocked, nothing signed: the order waits for the app, the browser is not in.
        view = login.assert_no_success()
        assert (view["status"], view["hintCode"]) == ("pending", "userSign")
        # The second try with the right PIN works, as on a real card.
        app.sign(scan, card=lab.open(anna.token_label, pin=PIN))
        assert login.finish()[SAMBI_HSA_ID] == [ANNA]


# --- many at once ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crowd(idp: IdpUnderTest, lab: TokenLab, tmp_path_factory: pytest.TempPathFactory) -> list:
    """CROWD_SIZE people in the directory, each with a card of their own, RSA and EC mixed.

    Mostly EC: SoftHSM can take a second or more to make an RSA key, and the other tests
    cover RSA cards well.
    """
    people = [(f"SE2120001355-C{number:04d}", f"Person{number}") for number in range(CROWD_SIZE)]
    csv = tmp_path_factory.mktemp("crowd") / "crowd.csv"
    csv.write_text(
        "hsa_id,given_name,surname,title,organisation,mail,person_key\n"
        + "".join(f"{hsa_id},{given},Crowd,,Göteborgs Stad,,\n" for hsa_id, given in people),
        encoding="utf-8",
    )
    imported = idp.idp_cli("people", "import", str(csv))
    assert imported.returncode == 0, imported.stderr
    return [
        lab.card(f"crowd-{number}", hsa_id, given, "Crowd", key_type="ec" if number % 10 else "rsa")
        for number, (hsa_id, given) in enumerate(people)
    ]


def test_many_concurrent_orders_are_neither_lost_nor_crossed(
    idp: IdpUnderTest, crowd: list[SoftHsmCard]
) -> None:
    # Request IDs are made here, not in the threads: the pysaml2 client is not thread-safe.
    requests = [
        idp.unsigned_sp.login_url(relay_state=f"crowd-{n}", sign=False) for n in range(len(crowd))
    ]

    def one_login(number: int) -> tuple[str, dict[str, str]]:
        login_url, _request_id = requests[number]
        with (
            browser(idp.ca_file) as client,
            SithsEidApp(idp.base_url, idp.ca_file, crowd[number]) as app,
        ):
            chooser = open_login(client, login_url, idp.base_url)
            href = parse_page(chooser.text).links["method-other-device"]
            page = client.get(idp.base_url + href)
            app.sign(app.scan(read_qr_on_page(page.text)))
            ref = urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)["ref"][0]
            view = client.get(f"{idp.base_url}/login/other-device/collect?ref={ref}").json()
            assert view["status"] == "complete", view
            final = follow(client, client.get(idp.base_url + view["next"]), idp.base_url)
            _action, fields = posted_form(final)
            return ref, fields

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=CROWD_THREADS) as pool:
        outcomes = list(pool.map(one_login, range(len(crowd)), timeout=120))
    elapsed = time.monotonic() - started

    assert len({ref for ref, _fields in outcomes}) == len(crowd)  # one order per browser
    for number, (_ref, fields) in enumerate(outcomes):
        assert fields["RelayState"] == f"crowd-{number}"
        ava = idp.unsigned_sp.parse(fields["SAMLResponse"], requests[number][1]).ava
        assert ava[SAMBI_HSA_ID] == [crowd[number].hsa_id], number
    assert elapsed < 60, f"{len(crowd)} concurrent logins took {elapsed:.1f} s"

"""The last login step, repeated: the same browser gets the lost answer again, nobody else does.

A node can die after committing ``GET /login/continue`` and before its answer reached nginx,
which then retries the GET on the other node; a user whose page never loaded reloads it. Within
a short window the browser that completed the login gets a fresh answer to the same request;
another browser, a late repeat, or a repeat after logout is refused as before. Real sockets, the
session's IdP and test SP; the database is touched only to move a login's expiry into the past.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import secrets
import sqlite3
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import IdpUnderTest
from tests.helpers.flows import follow, login_with_card, posted_form
from tests.helpers.refusals import SSO_COOKIE, assert_refusal_page
from tests.helpers.support import (
    browser,
    parse_page,
    tls_context,
)

SAMBI_HSA_ID = "http://sambi.se/attributes/1/employeeHsaId"
ANNA = "SE2120001355-E0001"
RP_ID = "retry-rp"
RP_CALLBACK = "https://retry-rp.example.test/callback"


def audit_count(idp: IdpUnderTest, event: str, outcome: str) -> int:
    with sqlite3.connect(idp.database_file()) as connection:
        (count,) = connection.execute(
            "SELECT count(*) FROM audit_events WHERE event = ? AND outcome = ?", (event, outcome)
        ).fetchone()
    return count


def pending_row(idp: IdpUnderTest, ref: str) -> tuple[str, str]:
    with sqlite3.connect(idp.database_file()) as connection:
        return connection.execute(
            "SELECT state, expires_at FROM pending_logins WHERE id = ?", (ref,)
        ).fetchone()


def expire(idp: IdpUnderTest, ref: str) -> None:
    with sqlite3.connect(idp.database_file()) as connection:
        updated = connection.execute(
            "UPDATE pending_logins SET expires_at = '2020-01-01 00:00:00.000000' WHERE id = ?",
            (ref,),
        )
        assert updated.rowcount == 1


def reference_of(continue_url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(continue_url).query)["ref"][0]


def continue_url_of(idp: IdpUnderTest, final: httpx.Response) -> str:
    """The ``/login/continue`` URL of the login whose answer ``final`` is: the card listener
    answers itself when the card finished the login, else it sent the browser there."""
    url = str(final.request.url)
    assert url.startswith(
        (f"{idp.cert_login_url}/cert-login?ref=", f"{idp.base_url}/login/continue?ref=")
    ), url
    return f"{idp.base_url}/login/continue?ref={reference_of(url)}"


@dataclass
class CompletedSamlLogin:
    client: httpx.Client
    request_id: str
    continue_url: str
    first_response: str

    @property
    def ref(self) -> str:
        return reference_of(self.continue_url)


@pytest.fixture
def completed(idp: IdpUnderTest) -> Iterator[CompletedSamlLogin]:
    """Anna has logged in with her card and the SP has its Response; the browser stays open."""
    login_url, request_id = idp.sp.login_url(relay_state="retry-state")
    with browser(idp.ca_file, idp.card("anna")) as client:
        final = login_with_card(client, login_url, idp.base_url)
        assert final.status_code == 200, final.text[:1000]
        continue_url = continue_url_of(idp, final)
        _action, fields = posted_form(final)
        yield CompletedSamlLogin(client, request_id, continue_url, fields["SAMLResponse"])


def test_loading_the_card_step_again_after_it_finished_gets_the_answer_again(
    idp: IdpUnderTest, completed: CompletedSamlLogin
) -> None:
    """The card listener answers a finished login itself: a reload of that page (or a proxy
    retrying it) is sent to ``/login/continue``, which answers the same request again."""
    repeats = audit_count(idp, "login", "repeated")
    reload = completed.client.get(f"{idp.cert_login_url}/cert-login?ref={completed.ref}")
    assert reload.status_code == 303, reload.text[:1000]
    assert reload.headers["location"] == completed.continue_url
    again = follow(completed.client, reload, idp.base_url)
    action, fields = posted_form(again)
    assert action == idp.sp.acs_url
    assert fields["SAMLResponse"] != completed.first_response
    assert idp.sp.parse(fields["SAMLResponse"], completed.request_id).in_response_to
    assert audit_count(idp, "login", "repeated") == repeats + 1


def test_same_browser_repeating_the_last_step_gets_a_fresh_answer_to_the_same_request(
    idp: IdpUnderTest, completed: CompletedSamlLogin
) -> None:
    first = idp.sp.parse(completed.first_response, completed.request_id)
    state, expires_at = pending_row(idp, completed.ref)
    assert state == "completed"
    # Completing shortened the login's life to the repeat window.
    expiry = dt.datetime.fromisoformat(expires_at).replace(tzinfo=dt.UTC)
    assert expiry <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=61)
    successes = audit_count(idp, "login", "success")
    repeats = audit_count(idp, "login", "repeated")

    again = completed.client.get(completed.continue_url)

    assert again.status_code == 200, again.text[:1000]
    action, fields = posted_form(again)
    assert action == idp.sp.acs_url
    assert fields["RelayState"] == "retry-state"
    assert fields["SAMLResponse"] != completed.first_response
    parsed = idp.sp.parse(fields["SAMLResponse"], completed.request_id)  # verifies signatures
    assert parsed.in_response_to == completed.request_id
    assert parsed.ava[SAMBI_HSA_ID] == [ANNA]
    assert parsed.assertion.id != first.assertion.id
    # A new SSO session for the browser: the first cookie may never have arrived.
    assert SSO_COOKIE in again.headers.get("set-cookie", "")
    # Audited as a repeat, not as a second login; the login stays completed once.
    assert audit_count(idp, "login", "repeated") == repeats + 1
    assert audit_count(idp, "login", "success") == successes
    assert pending_row(idp, completed.ref)[0] == "completed"
    assert '"outcome": "repeated"' in idp.server.log()
    # The new SSO session works: a second SP gets in without the card.
    second_url, second_id = idp.eid_sp.login_url()
    sso = follow(completed.client, completed.client.get(second_url), idp.base_url)
    _action, sso_fields = posted_form(sso)
    assert idp.eid_sp.parse(sso_fields["SAMLResponse"], second_id).ava[
        "urn:oid:1.2.752.29.6.2.1"
    ] == [ANNA]


def test_repeat_from_another_browser_is_refused(
    idp: IdpUnderTest, completed: CompletedSamlLogin
) -> None:
    with browser(idp.ca_file, idp.card("anna")) as stranger:
        assert_refusal_page(stranger.get(completed.continue_url), "other_browser", 403)
        # A browser with a browser cookie of its own (from its own login) fares no better.
        own_url, _ = idp.sp.login_url()
        login_with_card(stranger, own_url, idp.base_url)
        assert stranger.cookies.get("__Host-idp-browser")
        assert_refusal_page(stranger.get(completed.continue_url), "other_browser", 403)
    # The owner's repeat still works afterwards.
    assert "SAMLResponse" in completed.client.get(completed.continue_url).text


def test_repeat_after_the_window_is_refused(
    idp: IdpUnderTest, completed: CompletedSamlLogin
) -> None:
    expire(idp, completed.ref)
    repeats = audit_count(idp, "login", "repeated")
    assert_refusal_page(completed.client.get(completed.continue_url), "expired_login", 410)
    assert audit_count(idp, "login", "repeated") == repeats


def test_repeat_after_logout_is_refused(idp: IdpUnderTest, completed: CompletedSamlLogin) -> None:
    client = completed.client
    confirm = client.get(f"{idp.base_url}/saml/logout")
    assert confirm.status_code == 200, confirm.text[:500]
    form = parse_page(confirm.text).forms[0]
    done = follow(
        client, client.post(f"{idp.base_url}{form['action']}", data=form["fields"]), idp.base_url
    )
    assert 'id="logged-out"' in done.text, done.text[:1000]
    # Within the window, but answering again would log the user back in.
    assert_refusal_page(client.get(completed.continue_url), "login_already_completed", 409)


# --- OpenID Connect: a new one-time code for the same authorization request ----------------------


@dataclass
class RetryRp:
    client_id: str
    secret: str


@pytest.fixture(scope="module")
def retry_rp(idp: IdpUnderTest) -> RetryRp:
    result = idp.idp_cli(
        "oidc", "client", "add", RP_ID, "--name", "Retry RP", "--redirect-uri", RP_CALLBACK
    )
    assert result.returncode == 0, result.stderr
    secret = re.search(r"^client_secret: (\S+)$", result.stdout, re.MULTILINE)
    assert secret is not None, result.stdout
    return RetryRp(RP_ID, secret.group(1))


def authorization_url(idp: IdpUnderTest, verifier: str, state: str, **extra: str) -> str:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = {
        "response_type": "code",
        "client_id": RP_ID,
        "redirect_uri": RP_CALLBACK,
        "scope": "openid",
        "state": state,
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{idp.base_url}/oidc/authorize?{urllib.parse.urlencode(query)}"


def callback_of(response: httpx.Response) -> dict[str, str]:
    assert response.status_code in (302, 303), response.text[:1000]
    location = response.headers["location"]
    assert location.startswith(RP_CALLBACK + "?"), location
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def redeem(idp: IdpUnderTest, rp: RetryRp, code: str, verifier: str) -> httpx.Response:
    return httpx.post(
        f"{idp.base_url}/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": RP_CALLBACK,
            "code_verifier": verifier,
        },
        auth=(rp.client_id, rp.secret),
        verify=tls_context(idp.ca_file),
    )


def oidc_card_login(
    idp: IdpUnderTest, client: httpx.Client, **extra: str
) -> tuple[str, str, str, dict[str, str]]:
    """(verifier, state, /login/continue URL, the callback's query) of a finished card login."""
    verifier, state = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    final = login_with_card(client, authorization_url(idp, verifier, state, **extra), idp.base_url)
    continue_url = continue_url_of(idp, final)
    return verifier, state, continue_url, callback_of(final)


def test_oidc_repeat_gets_a_new_code_for_the_same_request(
    idp: IdpUnderTest, retry_rp: RetryRp
) -> None:
    with browser(idp.ca_file, idp.card("anna")) as client:
        verifier, state, continue_url, first = oidc_card_login(idp, client)
        again = callback_of(client.get(continue_url))
    assert first["state"] == again["state"] == state
    assert again["code"] != first["code"]
    # Only the newest answer's code buys tokens: the lost one has ended.
    lost = redeem(idp, retry_rp, first["code"], verifier)
    assert lost.status_code == 400 and lost.json()["error"] == "invalid_grant", lost.text
    token = redeem(idp, retry_rp, again["code"], verifier)
    assert token.status_code == 200, token.text
    assert token.json()["id_token"]


def test_oidc_repeat_with_a_nonce_gets_a_new_code(idp: IdpUnderTest, retry_rp: RetryRp) -> None:
    with browser(idp.ca_file, idp.card("anna")) as client:
        nonce = secrets.token_urlsafe(16)
        verifier, state, continue_url, first = oidc_card_login(idp, client, nonce=nonce)
        again = callback_of(client.get(continue_url))
    assert first["state"] == again["state"] == state
    assert "code" in again, again
    token = redeem(idp, retry_rp, again["code"], verifier)
    assert token.status_code == 200, token.text
    claims = json.loads(base64.urlsafe_b64decode(token.json()["id_token"].split(".")[1] + "=="))
    assert claims["nonce"] == nonce

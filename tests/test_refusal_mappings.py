"""Every refusal's reason code is mapped at each boundary: the SAML status its SP gets
(idp/saml/statuses.py) and the page the user sees (idp/web/messages.py), each from one table,
so a new code cannot be forgotten at either."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from idp.audit import record_refusal
from idp.login.errors import LoginFailed, LoginReason
from idp.saml.reasons import SamlReason
from idp.saml.server import SamlRequestRejected
from idp.saml.statuses import (
    AUTHN_FAILED,
    CANCELLED,
    INVALID_NAME_ID_POLICY,
    NO_AUTHN_CONTEXT,
    NO_PASSIVE,
    SAML_STATUS,
    USER_CANCELLED,
    saml_status,
)
from idp.siths.validation import RejectionReason
from idp.web.messages import (
    FALLBACK,
    MESSAGES,
    OTHERWISE,
    PAGES,
    SAML_REQUEST_MESSAGE,
    UNKNOWN_SP_MESSAGE,
    Topic,
    page_for,
)

# The codes a login can end with on the IdP's pages: each is answered to the SP and shown.
LOGIN_CODES = [*LoginReason, *RejectionReason, USER_CANCELLED]
SAML_REFUSAL_CLASSES = {
    "SamlRequestRejected",
    "SamlRequestNotMet",
    "SamlResponseRefused",
    "LogoutRejected",
    "MessageRejected",
    "BindingMessageRejected",
}
SAML_SOURCES = sorted((Path(__file__).parent.parent / "idp" / "saml").glob("*.py"))


@pytest.mark.parametrize("reason", [*LOGIN_CODES, *SamlReason])
def test_every_reason_code_has_a_saml_status_entry(reason: str) -> None:
    assert reason in SAML_STATUS


@pytest.mark.parametrize("reason", LOGIN_CODES)
def test_every_login_code_has_its_own_page(reason: str) -> None:
    assert page_for(Topic.LOGIN, reason) is MESSAGES[reason] is not FALLBACK


@pytest.mark.parametrize("reason", SamlReason)
@pytest.mark.parametrize("topic", [Topic.SAML_REQUEST, Topic.SAML_RESPONSE, Topic.SAML_LOGOUT])
def test_every_saml_code_has_a_page_in_every_saml_topic(topic: Topic, reason: str) -> None:
    assert page_for(topic, reason) is not FALLBACK


def test_the_statuses_sps_are_answered_with() -> None:
    assert saml_status(SamlReason.NO_PASSIVE) is NO_PASSIVE
    assert saml_status(SamlReason.NO_AUTHN_CONTEXT) is NO_AUTHN_CONTEXT
    assert saml_status(SamlReason.INVALID_NAME_ID_POLICY) is INVALID_NAME_ID_POLICY
    assert saml_status(USER_CANCELLED) is CANCELLED
    assert saml_status(RejectionReason.REVOKED) is AUTHN_FAILED
    assert saml_status(LoginReason.EXPIRED_LOGIN) is AUTHN_FAILED
    # A request refused before its SP could be trusted is never answered.
    assert SAML_STATUS[SamlReason.BAD_SIGNATURE] is None
    assert SAML_STATUS[SamlReason.UNKNOWN_SP] is None


def test_an_unknown_sp_and_a_bad_request_get_their_pages() -> None:
    assert page_for(Topic.SAML_REQUEST, SamlReason.UNKNOWN_SP) is UNKNOWN_SP_MESSAGE
    assert page_for(Topic.SAML_REQUEST, SamlReason.BAD_SIGNATURE) is SAML_REQUEST_MESSAGE
    # The same code met elsewhere reads differently: the app's bad signature is the user's.
    assert page_for(Topic.LOGIN, "bad_signature") is MESSAGES["bad_signature"]
    assert page_for(Topic.SAML_RESPONSE, "encryption_required") is MESSAGES["sp_cannot_be_answered"]


def test_the_page_table_names_only_known_codes() -> None:
    known = {*SamlReason, OTHERWISE}
    for topic in (Topic.SAML_REQUEST, Topic.SAML_RESPONSE, Topic.SAML_LOGOUT):
        assert set(PAGES[topic]) <= known, topic


def _literal_reasons(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in SAML_REFUSAL_CLASSES
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append(f"{path.name}:{node.lineno} {node.args[0].value}")
    return found


def test_saml_refuses_only_with_codes_of_its_enum() -> None:
    # A code written as a string would escape the tables' checks above.
    assert [site for path in SAML_SOURCES for site in _literal_reasons(path)] == []
    sample = Path(__file__).with_name("test_refusals.py")
    assert _literal_reasons(sample), "the check finds a literal code where there is one"


def test_a_refusal_is_audited_with_its_code_and_detail() -> None:
    recorded: list[tuple[str, dict[str, str]]] = []

    def sink(_session: object, event: str, **fields: str) -> None:
        recorded.append((event, fields))

    refusal = SamlRequestRejected(SamlReason.STALE_REQUEST, "IssueInstant 2020-01-01T00:00:00Z")
    record_refusal(sink, None, "saml.authn_request", refusal, client_id="https://sp.test")  # type: ignore[arg-type]
    login = LoginFailed(LoginReason.EXPIRED_LOGIN, "ttl passed", hsa_id="SE2120001355-E0001")
    record_refusal(sink, None, "login.step", login, outcome="failure", where="/login/choose")  # type: ignore[arg-type]
    assert recorded == [
        (
            "saml.authn_request",
            {
                "outcome": "rejected",
                "reason": "stale_request",
                "hsa_id": "",
                "client_id": "https://sp.test",
                "method": "",
                "detail": "IssueInstant 2020-01-01T00:00:00Z",
            },
        ),
        (
            "login.step",
            {
                "outcome": "failure",
                "reason": "expired_login",
                "hsa_id": "",
                "client_id": "",
                "method": "",
                "detail": "/login/choose: ttl passed",
            },
        ),
    ]

"""The one refusal model (idp/errors.py): one reason code and a detail, whatever was refused."""

from __future__ import annotations

import pytest

from idp.errors import Refusal
from idp.federation.document import MetadataDocumentError
from idp.federation.remote import AggregateRefused
from idp.login.errors import LoginFailed, LoginReason
from idp.login.pending import PendingState
from idp.methods.other_device.orders import OrderRefused
from idp.saml.bindings import BindingMessageRejected, RedirectSignatureInvalid
from idp.saml.logout import LogoutRejected
from idp.saml.messages import MessageRejected
from idp.saml.server import SamlRequestRejected
from idp.siths.revocation import RevocationProblem
from idp.siths.validation import CertificateRejected, RejectionReason
from idp.web.messages import FALLBACK, message_for


@pytest.mark.parametrize("reason", [*LoginReason, *RejectionReason])
def test_every_login_and_certificate_reason_has_its_own_page(reason: str) -> None:
    assert message_for(reason) is not FALLBACK


@pytest.mark.parametrize(
    "refusal",
    [
        LoginFailed(LoginReason.OTHER_BROWSER, "started elsewhere", hsa_id="SE2120001355-E0001"),
        CertificateRejected(RejectionReason.EXPIRED, "not after 2020"),
        RevocationProblem("unreachable", "OCSP timed out"),
        MessageRejected("malformed_message", "not base64"),
        BindingMessageRejected("duplicate_parameter", "SAMLRequest twice"),
        RedirectSignatureInvalid("no key verifies"),
        LogoutRejected("unknown_sp", "https://sp.example.test"),
        SamlRequestRejected("unknown_sp", "https://sp.example.test"),
        MetadataDocumentError("not_xml", "line 1"),
        AggregateRefused("expired", "validUntil passed"),
        OrderRefused("invalidSignature", "the signature does not verify"),
    ],
    ids=lambda refusal: type(refusal).__name__,
)
def test_every_refusal_is_one_reason_code_and_a_detail(refusal: Refusal) -> None:
    # One shape whatever was refused: pages, statuses and audit read .reason and .detail.
    assert isinstance(refusal, Refusal)
    assert type(str(refusal.reason)) is str and str(refusal.reason)
    assert str(refusal) == f"{refusal.reason}: {refusal.detail}"


def test_an_enumerated_reason_is_its_code() -> None:
    refusal = CertificateRejected(RejectionReason.REVOKED, "serial 12")
    assert refusal.reason == "certificate_revoked"
    assert f"{refusal.reason}" == "certificate_revoked"
    assert str(refusal) == "certificate_revoked: serial 12"


def test_pending_states_keep_their_database_values() -> None:
    assert [state.value for state in PendingState] == [
        "pending",
        "choosing",
        "authenticated",
        "completed",
        "cancelled",
    ]

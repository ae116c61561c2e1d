"""Single Logout for mock Treserva: SAML LogoutRequests and LogoutResponses with the IdP.

SP-initiated: :func:`start_logout` makes a LogoutRequest for the session's login (NameID and
SessionIndex from the assertion) and :func:`finish_logout` checks the IdP's LogoutResponse.
IdP-initiated: :func:`answer_logout_request` checks the IdP's LogoutRequest and makes the
LogoutResponse. Messages this SP sends go by HTTP-Redirect with the signature over the query
(RSA-SHA256). Messages it receives must be signed by the IdP's key from its metadata: over the
exact query octets (HTTP-Redirect) or enveloped (HTTP-POST); unsigned ones are refused.

Every function that takes a :class:`~saml2.client.Saml2Client` blocks: call it from a worker
thread.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import time
import zlib
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, samlp
from saml2.client import Saml2Client
from saml2.response import IncorrectlySigned, StatusError
from saml2.s_utils import UnsupportedBinding, status_message_factory
from saml2.saml import NameID
from saml2.sigver import MissingKey, SignatureError
from saml2.time_util import str_to_time

from sp_demo.bindings import BindingError, ReceivedMessage, verify_query_signature
from sp_demo.config import Settings
from sp_demo.saml import SIG_RSA_SHA256, LoginResult, idp_entity_id

# Session key for the ID of the LogoutRequest this browser's logout is waiting to hear about.
LOGOUT_REQUEST_KEY = "saml_logout_request"
# A logout message is a few kilobytes; bounded before and after inflating.
MAX_MESSAGE_CHARS = 64 * 1024
MAX_XML_BYTES = 256 * 1024


class LogoutMessageError(Exception):
    """A logout message that is not accepted. ``reason``: ``invalid`` (unreadable, wrong
    destination or issuer), ``signature`` (missing or wrong), ``unsolicited`` (answers no
    logout of this browser). ``detail`` is for logs."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class LogoutAnswer:
    """The LogoutResponse to send the browser to (``location``), and whether the request was
    for this browser's login (then the local session must end)."""

    location: str
    ends_local_session: bool


def start_logout(
    client: Saml2Client, login: LoginResult, session: MutableMapping[str, Any]
) -> str | None:
    """A signed LogoutRequest to the IdP's SLO endpoint (HTTP-Redirect) for ``login``: the URL
    to send the browser to. None if the IdP publishes no such endpoint (local logout only).
    The request ID is kept in ``session`` for :func:`finish_logout`."""
    idp = idp_entity_id(client)
    try:
        endpoints = client.metadata.single_logout_service(idp, BINDING_HTTP_REDIRECT, "idpsso")
    except UnsupportedBinding:
        endpoints = []
    if not endpoints:
        return None
    destination = endpoints[0]["location"]
    name_id = NameID(
        text=login.name_id,
        format=login.name_id_format or None,
        name_qualifier=login.name_qualifier or None,
        sp_name_qualifier=login.sp_name_qualifier or None,
    )
    request_id, request = client.create_logout_request(
        destination,
        idp,
        name_id=name_id,
        session_indexes=[login.session_index] if login.session_index else None,
        sign=False,  # the HTTP-Redirect binding signs the query instead
    )
    info = client.apply_binding(
        BINDING_HTTP_REDIRECT, str(request), destination, sign=True, sigalg=SIG_RSA_SHA256
    )
    session[LOGOUT_REQUEST_KEY] = request_id
    return str(dict(info["headers"])["Location"])


def finish_logout(
    client: Saml2Client,
    settings: Settings,
    binding: str,
    received: ReceivedMessage,
    session: MutableMapping[str, Any],
) -> bool:
    """Check the IdP's LogoutResponse to this browser's LogoutRequest; True if the IdP says the
    logout succeeded, False if it reports failure. The request is forgotten either way."""
    saml_response = received.text
    _check_message(binding, saml_response)
    if binding == BINDING_HTTP_REDIRECT:
        _verify_query(client, received)
    expected = session.pop(LOGOUT_REQUEST_KEY, None)
    try:
        parsed = client.parse_logout_request_response(saml_response, binding)
    except StatusError:
        return False
    except Exception as error:
        raise _refusal(error) from error
    if parsed is None:
        raise LogoutMessageError("invalid", "not a LogoutResponse")
    message = parsed.response
    _check_issuer_and_destination(client, settings, binding, message)
    if binding == BINDING_HTTP_POST and message.signature is None:
        raise LogoutMessageError("signature", "the LogoutResponse is not signed")
    if not expected or message.in_response_to != expected:
        raise LogoutMessageError("unsolicited", f"InResponseTo {message.in_response_to!r}")
    return True


def answer_logout_request(
    client: Saml2Client,
    settings: Settings,
    binding: str,
    received: ReceivedMessage,
    login: LoginResult | None,
) -> LogoutAnswer:
    """Check the IdP's LogoutRequest and make the signed LogoutResponse (HTTP-Redirect).

    Success if it names this browser's SITHS login (same NameID, and SessionIndex if both have
    one), which must then end, or the browser has no SITHS login; UnknownPrincipal if the
    browser's login is another one, which is then left alone.
    """
    saml_request, relay_state = received.text, received.relay_state
    _check_message(binding, saml_request)
    if binding == BINDING_HTTP_REDIRECT:
        _verify_query(client, received)
    try:
        parsed = client.parse_logout_request(saml_request, binding)
    except Exception as error:
        raise _refusal(error) from error
    if parsed is None or parsed.message is None:
        raise LogoutMessageError("invalid", "not a LogoutRequest")
    message: samlp.LogoutRequest = parsed.message
    _check_issuer_and_destination(client, settings, binding, message)
    if binding == BINDING_HTTP_POST and message.signature is None:
        raise LogoutMessageError("signature", "the LogoutRequest is not signed")
    _check_not_expired(message)
    # No SITHS login here (logged out already, or a Windows login, which the IdP never
    # vouched for): nothing to end, and the answer is still Success.
    matches = login is not None and _names_login(message, login)
    status = None
    if login is not None and not matches:
        status = status_message_factory(
            "not the login of this browser", samlp.STATUS_UNKNOWN_PRINCIPAL
        )
    response = client.create_logout_response(
        message, bindings=[BINDING_HTTP_REDIRECT], status=status, sign=False
    )
    info = client.apply_binding(
        BINDING_HTTP_REDIRECT,
        str(response),
        response.destination,
        relay_state=relay_state,
        response=True,
        sign=True,
        sigalg=SIG_RSA_SHA256,
    )
    return LogoutAnswer(str(dict(info["headers"])["Location"]), ends_local_session=matches)


def _refusal(error: Exception) -> LogoutMessageError:
    # pysaml2 refuses with many exception types (even AssertionError); none may become a 500.
    reason = (
        "signature"
        if isinstance(error, IncorrectlySigned | SignatureError | MissingKey)
        else "invalid"
    )
    return LogoutMessageError(reason, f"{type(error).__name__}: {error}")


def _names_login(message: samlp.LogoutRequest, login: LoginResult) -> bool:
    name_id = message.name_id.text if message.name_id is not None else None
    if not name_id or name_id != login.name_id:
        return False
    indexes = [index.text for index in message.session_index or []]
    return not indexes or not login.session_index or login.session_index in indexes


def _check_message(binding: str, text: str) -> None:
    # pysaml2 decodes (and inflates) without limits and lets a DTD through: check first.
    if len(text) > MAX_MESSAGE_CHARS:
        raise LogoutMessageError("invalid", "message too large")
    try:
        raw = base64.b64decode(text.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError) as error:
        raise LogoutMessageError("invalid", "not base64") from error
    if binding == BINDING_HTTP_REDIRECT:
        inflater = zlib.decompressobj(-15)
        try:
            raw = inflater.decompress(raw, MAX_XML_BYTES)
        except zlib.error as error:
            raise LogoutMessageError("invalid", "not DEFLATE data") from error
        if inflater.unconsumed_tail:
            raise LogoutMessageError("invalid", "message inflates too large")
    try:
        ElementTree.fromstring(raw, forbid_dtd=True)
    except (ElementTree.ParseError, DefusedXmlException, ValueError) as error:
        raise LogoutMessageError("invalid", "not well-formed XML without DTD") from error


def _verify_query(client: Saml2Client, received: ReceivedMessage) -> None:
    if received.query_signature is None:
        raise LogoutMessageError("signature", "the message is not signed")
    try:
        verify_query_signature(received.query_signature, _idp_certificates(client))
    except BindingError as error:
        raise LogoutMessageError("signature", error.detail) from error


def _idp_certificates(client: Saml2Client) -> list[x509.Certificate]:
    certificates = []
    for _name, text in client.metadata.certs(idp_entity_id(client), "idpsso", "signing"):
        try:
            der = base64.b64decode("".join(text.split()))
            certificates.append(x509.load_der_x509_certificate(der))
        except ValueError:
            continue
    return certificates


def _check_issuer_and_destination(
    client: Saml2Client, settings: Settings, binding: str, message: Any
) -> None:
    issuer = (
        message.issuer.text.strip() if message.issuer is not None and message.issuer.text else ""
    )
    if issuer != idp_entity_id(client):
        raise LogoutMessageError("invalid", f"issuer {issuer!r} is not the IdP")
    expected = (
        settings.slo_redirect_url if binding == BINDING_HTTP_REDIRECT else settings.slo_post_url
    )
    if message.destination != expected:
        raise LogoutMessageError("invalid", f"Destination {message.destination!r}")


def _check_not_expired(message: samlp.LogoutRequest) -> None:
    if message.not_on_or_after:
        try:
            deadline = calendar.timegm(str_to_time(message.not_on_or_after))
        except (TypeError, ValueError) as error:
            raise LogoutMessageError("invalid", "NotOnOrAfter is not a time") from error
        if deadline < time.time():
            raise LogoutMessageError("invalid", "the LogoutRequest has expired")

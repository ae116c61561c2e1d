"""SAML Single Logout messages at the IdP: reading the SPs' LogoutRequests and LogoutResponses,
and making the IdP's own.

What the IdP requires of a message it receives: an SP known by its metadata as the Issuer; a
signature by one of that SP's metadata keys (over the exact query octets for HTTP-Redirect,
enveloped for HTTP-POST) — always, whatever the SP's AuthnRequestsSigned says, as a logout ends
a session; Destination this endpoint; IssueInstant within minutes; a LogoutRequest not past its
NotOnOrAfter. What it sends: a LogoutRequest/LogoutResponse to the SP's SingleLogoutService
from its metadata (never a URL from the message), HTTP-Redirect preferred, signed RSA-SHA256.

Every method blocks (pysaml2, signing): call it from a worker thread. Nothing here touches the
database; :mod:`idp.saml.logout_run` decides who is sent what.
"""

from __future__ import annotations

import base64
import calendar
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml, samlp
from saml2.response import IncorrectlySigned, StatusError
from saml2.s_utils import UnsupportedBinding
from saml2.saml import NameID
from saml2.server import Server
from saml2.sigver import MissingKey, SignatureError
from saml2.time_util import in_a_while, str_to_time

from idp.config import Settings
from idp.errors import Refusal
from idp.saml.bindings import BindingMessage, RedirectSignatureInvalid, verify_query_signature
from idp.saml.messages import (
    MessageRejected,
    decode_post_message,
    decode_redirect_message,
    require_root,
)
from idp.saml.reasons import SamlReason
from idp.saml.server import DIGEST_SHA256, SIG_RSA_SHA256, SamlIdentityProvider, ServiceProvider

# How long the SP has to act on the IdP's LogoutRequest (its NotOnOrAfter).
LOGOUT_REQUEST_LIFETIME_MINUTES = 5
_BINDINGS = (BINDING_HTTP_REDIRECT, BINDING_HTTP_POST)


class LogoutRejected(Refusal):
    """The message is refused and gets no answer. ``reason`` is a stable code for the audit
    trail and the error page: ``malformed_request``, ``unknown_sp``, ``bad_signature``,
    ``unsigned_request``, ``wrong_destination``, ``stale_request``, ``request_too_large``,
    ``xml_dtd_refused``; ``detail`` is for logs."""


@dataclass(frozen=True)
class LogoutRequestIn:
    """An accepted LogoutRequest from an SP."""

    request_id: str
    sp_entity_id: str
    name_id: str
    session_indexes: tuple[str, ...]


@dataclass(frozen=True)
class LogoutResponseIn:
    """An accepted LogoutResponse from an SP; ``success`` is its top-level status."""

    in_response_to: str
    sp_entity_id: str
    success: bool


@dataclass(frozen=True)
class Outgoing:
    """A message for the browser to carry: ``url`` to redirect to (HTTP-Redirect), or a form
    to post ``fields`` to ``url`` (HTTP-POST)."""

    binding: str
    url: str
    fields: dict[str, str] = field(default_factory=dict)
    message_id: str = ""


@dataclass(frozen=True)
class SubjectOut:
    """Whom a LogoutRequest to an SP names: what that SP was given at login."""

    sp_entity_id: str
    name_id: str
    name_id_format: str
    name_qualifier: str
    sp_name_qualifier: str
    session_index: str


class SamlLogout:
    """Single Logout messages for :class:`SamlIdentityProvider`'s SPs. Thread-safe."""

    def __init__(self, settings: Settings, saml_idp: SamlIdentityProvider) -> None:
        self._settings = settings
        self._saml = saml_idp
        self._urls = {
            BINDING_HTTP_REDIRECT: f"{settings.base_url}/saml/slo/redirect",
            BINDING_HTTP_POST: f"{settings.base_url}/saml/slo/post",
        }

    # --- receiving ---------------------------------------------------------------------------

    def read_logout_request(self, binding: str, received: BindingMessage) -> LogoutRequestIn:
        """Verify and read an SP's LogoutRequest; raise :class:`LogoutRejected` if bad."""
        xml = self._decode(binding, received.text, "LogoutRequest")
        server = self._saml.server()
        try:
            # binding=None: already decoded (pysaml2's own decoding is unbounded).
            parsed = server.parse_logout_request(xml, binding=None)
        except (IncorrectlySigned, SignatureError, MissingKey) as exc:
            raise LogoutRejected(SamlReason.BAD_SIGNATURE, type(exc).__name__) from exc
        except Exception as exc:
            raise LogoutRejected(SamlReason.MALFORMED_REQUEST, type(exc).__name__) from exc
        if parsed is None or parsed.message is None:
            raise LogoutRejected(SamlReason.MALFORMED_REQUEST, "not a LogoutRequest")
        message: samlp.LogoutRequest = parsed.message
        sp = self._check_common(message, binding, received)
        if message.not_on_or_after and _time(message.not_on_or_after) < dt.datetime.now(dt.UTC):
            raise LogoutRejected(
                SamlReason.STALE_REQUEST, f"NotOnOrAfter {message.not_on_or_after}"
            )
        if message.name_id is None or not message.name_id.text:
            raise LogoutRejected(SamlReason.MALFORMED_REQUEST, "the LogoutRequest names no NameID")
        return LogoutRequestIn(
            request_id=message.id,
            sp_entity_id=sp.entity_id,
            name_id=message.name_id.text.strip(),
            session_indexes=tuple(i.text.strip() for i in message.session_index or [] if i.text),
        )

    def read_logout_response(self, binding: str, received: BindingMessage) -> LogoutResponseIn:
        """Verify and read an SP's LogoutResponse; raise :class:`LogoutRejected` if bad."""
        xml = self._decode(binding, received.text, "LogoutResponse")
        server = self._saml.server()
        success = True
        try:
            parsed = server.parse_logout_request_response(xml, binding=None)
            message = parsed.response if parsed is not None else None
        except StatusError:
            # pysaml2 checks the status after the signature: this one's signature (if any) was
            # verified; a non-success LogoutResponse is an answer, not a refusal.
            success = False
            message = samlp.logout_response_from_string(xml)
        except (IncorrectlySigned, SignatureError, MissingKey) as exc:
            raise LogoutRejected(SamlReason.BAD_SIGNATURE, type(exc).__name__) from exc
        except Exception as exc:
            raise LogoutRejected(SamlReason.MALFORMED_REQUEST, type(exc).__name__) from exc
        if message is None or not message.in_response_to:
            raise LogoutRejected(SamlReason.MALFORMED_REQUEST, "not a LogoutResponse to a request")
        sp = self._check_common(message, binding, received)
        return LogoutResponseIn(message.in_response_to, sp.entity_id, success)

    def _decode(self, binding: str, text: str, root: str) -> str:
        limit = self._settings.saml_max_request_bytes
        try:
            if binding == BINDING_HTTP_REDIRECT:
                xml = decode_redirect_message(text, limit)
            else:
                xml = decode_post_message(text, limit)
            require_root(xml, root)
        except MessageRejected as exc:
            raise LogoutRejected(exc.reason, exc.detail) from exc
        return xml

    def _check_common(
        self, message: Any, binding: str, received: BindingMessage
    ) -> ServiceProvider:
        issuer = message.issuer.text.strip() if message.issuer and message.issuer.text else ""
        if not issuer:
            raise LogoutRejected(SamlReason.MALFORMED_REQUEST, "the message has no Issuer")
        sp = self._saml.describe_sp(issuer)
        if sp is None:
            raise LogoutRejected(SamlReason.UNKNOWN_SP, f"no metadata for {issuer}")
        if binding == BINDING_HTTP_REDIRECT:
            if received.query_signature is None:
                raise LogoutRejected(SamlReason.UNSIGNED_REQUEST, "a logout message must be signed")
            try:
                verify_query_signature(received.query_signature, sp.signing_certificates)
            except RedirectSignatureInvalid as exc:
                raise LogoutRejected(SamlReason.BAD_SIGNATURE, exc.detail) from exc
        elif message.signature is None:
            # pysaml2 verified an enveloped signature against the SP's metadata keys if there
            # was one; there must be one.
            raise LogoutRejected(SamlReason.UNSIGNED_REQUEST, "a logout message must be signed")
        if message.version != "2.0" or not message.id:
            raise LogoutRejected(SamlReason.MALFORMED_REQUEST, "SAML 2.0 with an ID expected")
        if message.destination != self._urls[binding]:
            raise LogoutRejected(SamlReason.WRONG_DESTINATION, f"Destination {message.destination}")
        try:
            issued = _time(message.issue_instant)
        except (TypeError, ValueError) as exc:
            raise LogoutRejected(
                SamlReason.MALFORMED_REQUEST, "IssueInstant is not a time"
            ) from exc
        skew = dt.timedelta(seconds=self._settings.saml_clock_skew_seconds)
        if abs(issued - dt.datetime.now(dt.UTC)) > skew:
            raise LogoutRejected(SamlReason.STALE_REQUEST, f"IssueInstant {message.issue_instant}")
        return sp

    # --- sending -----------------------------------------------------------------------------

    def logout_request(self, subject: SubjectOut, relay_state: str) -> Outgoing | None:
        """A signed LogoutRequest naming ``subject``, for the SP's SLO endpoint; None if its
        metadata has no SingleLogoutService (it cannot be logged out)."""
        server = self._saml.server()
        endpoint = _slo_endpoint(server, subject.sp_entity_id, BINDING_HTTP_REDIRECT)
        if endpoint is None:
            return None
        binding, destination = endpoint
        name_id = NameID(
            text=subject.name_id,
            format=subject.name_id_format or None,
            name_qualifier=subject.name_qualifier or None,
            sp_name_qualifier=subject.sp_name_qualifier or None,
        )
        request_id, request = server.create_logout_request(
            destination,
            subject.sp_entity_id,
            name_id=name_id,
            session_indexes=[subject.session_index] if subject.session_index else None,
            expire=in_a_while(minutes=LOGOUT_REQUEST_LIFETIME_MINUTES),
            # HTTP-Redirect signs the query instead of the XML.
            sign=binding == BINDING_HTTP_POST,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        return _carry(server, binding, destination, str(request), relay_state, False, request_id)

    def logout_response(
        self,
        sp_entity_id: str,
        in_response_to: str,
        preferred_binding: str,
        relay_state: str,
        partial: bool,
    ) -> Outgoing | None:
        """A signed LogoutResponse (Success; with PartialLogout if not every SP confirmed) for
        the SP's SLO endpoint, in the binding the request came by if the SP has it."""
        server = self._saml.server()
        endpoint = _slo_endpoint(server, sp_entity_id, preferred_binding)
        if endpoint is None:
            return None
        binding, destination = endpoint
        status = None
        if partial:
            status = samlp.Status(
                status_code=samlp.StatusCode(
                    value=samlp.STATUS_SUCCESS,
                    status_code=samlp.StatusCode(value=samlp.STATUS_PARTIAL_LOGOUT),
                ),
                status_message=samlp.StatusMessage(text="Not every service confirmed the logout"),
            )
        # create_logout_response needs only the request's ID and Issuer from the request.
        request = samlp.LogoutRequest(id=in_response_to, issuer=saml.Issuer(text=sp_entity_id))
        response = server.create_logout_response(
            request, bindings=[binding], status=status, sign=False
        )
        response.destination = destination
        xml = str(response)
        if binding == BINDING_HTTP_POST:
            xml = str(server.sign(response, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256))
        return _carry(server, binding, destination, xml, relay_state, True, response.id)


def _carry(
    server: Server,
    binding: str,
    destination: str,
    xml: str,
    relay_state: str,
    is_response: bool,
    message_id: str,
) -> Outgoing:
    if binding == BINDING_HTTP_REDIRECT:
        info = server.apply_binding(
            BINDING_HTTP_REDIRECT,
            xml,
            destination,
            relay_state=relay_state,
            response=is_response,
            sign=True,
            sigalg=SIG_RSA_SHA256,
        )
        return Outgoing(binding, str(dict(info["headers"])["Location"]), message_id=message_id)
    name = "SAMLResponse" if is_response else "SAMLRequest"
    fields = {name: base64.b64encode(xml.encode("utf-8")).decode("ascii")}
    if relay_state:
        fields["RelayState"] = relay_state
    return Outgoing(binding, destination, fields, message_id)


def _slo_endpoint(server: Server, entity_id: str, preferred: str) -> tuple[str, str] | None:
    """(binding, location) of the SP's SingleLogoutService: ``preferred`` binding if it has
    one, else the other of Redirect and POST."""
    for binding in (preferred, *(b for b in _BINDINGS if b != preferred)):
        try:
            services = server.metadata.single_logout_service(entity_id, binding, "spsso")
        except UnsupportedBinding:
            continue
        if services:
            return binding, services[0]["location"]
    return None


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(calendar.timegm(str_to_time(text)), dt.UTC)

"""SAML SPs nobody here wrote, behind one small interface, for the interop matrix.

Each peer is configured only from the IdP's published metadata (and its own key), registered
with the IdP by putting the metadata it generates into the IdP's SP metadata directory, and
parses every Response with its own library: OneLogin's python3-saml in strict mode
(``OneLogin_Saml2_Auth.process_response``) or pysaml2 (``parse_authn_request_response``).
The browser part (tests.helpers.support.browser) carries the messages over real sockets.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Protocol

import httpx
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from saml2 import BINDING_HTTP_REDIRECT, saml, samlp
from saml2.response import StatusError

from tests.helpers.certificates import make_self_signed as make_key_pair
from tests.helpers.saml_sp import RSA_SHA256, SAMBI_ATTRIBUTES, SHA256, URI, TestServiceProvider
from tests.helpers.support import tls_context

TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"

SAMBI_LOA = "http://id.sambi.se/loa/loa{}"
EID_LOA = "http://id.elegnamnden.se/loa/1.0/loa{}"
PASSWORD_PROTECTED_TRANSPORT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"

RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
REQUESTER = "urn:oasis:names:tc:SAML:2.0:status:Requester"
NO_AUTHN_CONTEXT = "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext"
INVALID_NAME_ID_POLICY = "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy"
AUTHN_FAILED = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"
# The Swedish eID Framework's status code for a user cancel (its Registry for Identifiers).
CANCEL = "http://id.elegnamnden.se/status/1.0/cancel"


@dataclass(frozen=True)
class SpRequest:
    """What the SP asks for in its AuthnRequest."""

    loa: tuple[str, ...] = ()  # RequestedAuthnContext class refs; none → no element
    comparison: str = "exact"
    name_id_format: str | None = None
    sp_name_qualifier: str | None = None  # NameIDPolicy's; pysaml2 only
    relay_state: str = "interop-state"


@dataclass
class SamlOutcome:
    """What the peer's library made of a Response (after its own validation)."""

    success: bool
    status: list[str] = field(default_factory=list)  # top-level code, then the second level
    in_response_to: str | None = None
    name_id: str | None = None
    name_id_format: str | None = None
    authn_context: str | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""


class SamlPeer(Protocol):
    name: str
    entity_id: str
    acs_url: str

    def login_url(self, request: SpRequest) -> tuple[str, str]:
        """A signed HTTP-Redirect AuthnRequest URL to the IdP, and the request's ID."""
        ...

    def consume(self, fields: dict[str, str], request_id: str) -> SamlOutcome:
        """Hand the posted form to the SP's library, as its ACS would."""
        ...


def fetch_idp_metadata(base_url: str, ca_file: Path) -> str:
    answer = httpx.get(f"{base_url}/saml/metadata", verify=tls_context(ca_file), timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.text


# --- OneLogin python3-saml ----------------------------------------------------------------------


class Python3SamlPeer:
    """OneLogin's python3-saml SP in strict mode: signed requests, wants encrypted assertions.

    Its ACS is driven in process with the request dict python3-saml takes from any web
    framework; the Response it reads is the one the IdP posted, fetched over real sockets.
    """

    name = "python3-saml"

    def __init__(
        self, directory: Path, entity_id: str, idp_metadata_xml: str, signing_cert: Path
    ) -> None:
        self.entity_id = entity_id
        parts = urllib.parse.urlsplit(entity_id)
        self.host = parts.hostname or "sp.example.test"
        self.acs_url = f"https://{self.host}/acs"
        directory.mkdir(parents=True, exist_ok=True)
        key, cert = make_key_pair(directory, self.host)
        self._key_pem, self._cert_pem = key.read_text(), cert.read_text()
        # Trust in the metadata itself comes from the federation's signing certificate, handed
        # over out of band; python3-saml checks the metadata's signature with it.
        assert OneLogin_Saml2_Utils.validate_metadata_sign(
            idp_metadata_xml, cert=signing_cert.read_text(), raise_exceptions=True
        )
        self._idp = OneLogin_Saml2_IdPMetadataParser.parse(idp_metadata_xml)
        self.metadata_xml = self._settings(SpRequest()).get_sp_metadata().decode()
        errors = self._settings(SpRequest()).validate_metadata(self.metadata_xml)
        assert not errors, errors

    def _settings(self, request: SpRequest) -> OneLogin_Saml2_Settings:
        sp: dict[str, Any] = {
            "entityId": self.entity_id,
            "assertionConsumerService": {
                "url": self.acs_url,
                "binding": OneLogin_Saml2_Constants.BINDING_HTTP_POST,
            },
            # The metadata says "unspecified": which format a login gets is up to each request.
            "NameIDFormat": request.name_id_format or UNSPECIFIED,
            "x509cert": self._cert_pem,
            "privateKey": self._key_pem,
            "attributeConsumingService": {
                "serviceName": "python3-saml interop SP",
                "requestedAttributes": [
                    {"name": name, "nameFormat": URI, "isRequired": True}
                    for name in SAMBI_ATTRIBUTES
                ],
            },
        }
        security: dict[str, Any] = {
            "authnRequestsSigned": True,
            "wantMessagesSigned": True,
            "wantAssertionsSigned": True,
            # Also puts an encryption KeyDescriptor into the SP's metadata.
            "wantAssertionsEncrypted": True,
            "wantNameId": True,
            "wantAttributeStatement": True,
            "signatureAlgorithm": RSA_SHA256,
            "digestAlgorithm": SHA256,
            "rejectDeprecatedAlgorithm": True,
            "rejectUnsolicitedResponsesWithInResponseTo": True,
            "requestedAuthnContext": list(request.loa) or False,
            "requestedAuthnContextComparison": request.comparison,
            # For exact, python3-saml itself checks that the answer is one it asked for.
            "failOnAuthnContextMismatch": request.comparison == "exact",
        }
        # Only the parsed "idp" part: the parser also proposes the IdP's first NameIDFormat as
        # the SP's, which would override the format each request asks for.
        settings = OneLogin_Saml2_IdPMetadataParser.merge_settings(
            {"strict": True, "debug": False, "sp": sp, "security": security},
            {"idp": self._idp["idp"]},
        )
        return OneLogin_Saml2_Settings(settings, sp_validation_only=False)

    def _request_data(self, path: str, post: dict[str, str] | None = None) -> dict[str, Any]:
        return {
            "https": "on",
            "http_host": self.host,
            "script_name": path,
            "get_data": {},
            "post_data": post or {},
        }

    def login_url(self, request: SpRequest) -> tuple[str, str]:
        assert request.sp_name_qualifier is None, "python3-saml never sends SPNameQualifier"
        auth = OneLogin_Saml2_Auth(self._request_data("/login"), self._settings(request))
        url = auth.login(
            return_to=request.relay_state, set_nameid_policy=request.name_id_format is not None
        )
        return url, auth.get_last_request_id()

    def consume(self, fields: dict[str, str], request_id: str) -> SamlOutcome:
        settings = self._settings(SpRequest())
        auth = OneLogin_Saml2_Auth(self._request_data("/acs", fields), settings)
        auth.process_response(request_id=request_id)
        if not auth.get_errors():
            assert auth.is_authenticated()
            contexts = auth.get_last_authn_contexts()
            return SamlOutcome(
                success=True,
                status=[OneLogin_Saml2_Constants.STATUS_SUCCESS],
                in_response_to=auth.get_last_response_in_response_to(),
                name_id=auth.get_nameid(),
                name_id_format=auth.get_nameid_format(),
                authn_context=contexts[0] if len(contexts) == 1 else repr(contexts),
                attributes=auth.get_attributes(),
            )
        # Strict python3-saml stops at a non-Success status before it looks at signatures, so
        # the error Response's signature is checked here, with its own utility and the IdP's
        # certificates from metadata, before its status codes are believed.
        response = OneLogin_Saml2_Response(settings, fields["SAMLResponse"])
        signing = self._idp["idp"].get("x509certMulti", {}).get("signing") or [
            self._idp["idp"]["x509cert"]
        ]
        assert OneLogin_Saml2_Utils.validate_sign(
            response.document, multicerts=signing, raise_exceptions=True
        )
        codes = [
            node.get("Value")
            for node in OneLogin_Saml2_XML.query(
                response.document, "/samlp:Response/samlp:Status//samlp:StatusCode"
            )
        ]
        return SamlOutcome(
            success=False,
            status=codes,
            in_response_to=response.get_in_response_to(),
            error=auth.get_last_error_reason() or "",
        )


# --- pysaml2 ------------------------------------------------------------------------------------


class Pysaml2Peer:
    """The session's pysaml2 SP (tests/helpers/saml_sp.py), asking for LoA and NameID per
    request."""

    name = "pysaml2"

    def __init__(self, sp: TestServiceProvider) -> None:
        self.sp = sp
        self.entity_id = sp.entity_id
        self.acs_url = sp.acs_url

    def login_url(self, request: SpRequest) -> tuple[str, str]:
        kwargs: dict[str, Any] = {}
        if request.loa:
            kwargs["requested_authn_context"] = samlp.RequestedAuthnContext(
                authn_context_class_ref=[
                    saml.AuthnContextClassRef(text=uri) for uri in request.loa
                ],
                comparison=request.comparison,
            )
        if request.sp_name_qualifier:
            kwargs["name_id_policy"] = samlp.NameIDPolicy(
                format=request.name_id_format,
                sp_name_qualifier=request.sp_name_qualifier,
                allow_create="true",
            )
        elif request.name_id_format:
            kwargs["nameid_format"] = request.name_id_format
        request_id, info = self.sp.client.prepare_for_authenticate(
            relay_state=request.relay_state,
            binding=BINDING_HTTP_REDIRECT,
            assertion_consumer_service_url=self.acs_url,
            sign=True,
            sigalg=RSA_SHA256,
            digest_alg=SHA256,
            **kwargs,
        )
        return dict(info["headers"])["Location"], request_id

    def consume(self, fields: dict[str, str], request_id: str) -> SamlOutcome:
        try:
            parsed = self.sp.parse(fields["SAMLResponse"], request_id)
        except StatusError as error:
            # pysaml2 raises after it has verified the Response's signature; its message
            # carries the Status element, whose codes are read back from it.
            text = str(error)
            return SamlOutcome(
                success=False, status=re.findall(r'Value="([^"]+)"', text), error=text
            )
        assertion = parsed.assertion
        name_id = assertion.subject.name_id
        return SamlOutcome(
            success=True,
            status=[samlp.STATUS_SUCCESS],
            in_response_to=parsed.in_response_to,
            name_id=name_id.text,
            name_id_format=name_id.format,
            authn_context=assertion.authn_statement[0].authn_context.authn_context_class_ref.text,
            attributes=parsed.ava,
        )


# --- reading the IdP's pages --------------------------------------------------------------------


@dataclass
class PageForm:
    method: str
    action: str
    fields: dict[str, str]
    text: str  # the visible text inside the form, buttons included


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[PageForm] = []
        self._open: PageForm | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        if tag == "form":
            self._open = PageForm(
                attributes.get("method", "get").lower(), attributes.get("action", ""), {}, ""
            )
            self.forms.append(self._open)
        elif self._open is not None and tag in ("input", "button") and attributes.get("name"):
            if attributes.get("type") in ("radio", "checkbox") and "checked" not in attributes:
                return
            self._open.fields[attributes["name"]] = attributes.get("value", "")
        if self._open is not None and tag == "input" and attributes.get("type") == "submit":
            self._open.text += " " + attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open.text += data


def forms_of(html: str) -> list[PageForm]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def form_to_acs(page: httpx.Response, acs_url: str) -> dict[str, str]:
    """The fields of the form on ``page`` that posts a SAMLResponse to ``acs_url``."""
    found = [
        form
        for form in forms_of(page.text)
        if form.action == acs_url and form.method == "post" and "SAMLResponse" in form.fields
    ]
    assert len(found) == 1, f"no single form to {acs_url} on the page: {page.text[:3000]}"
    return found[0].fields


def back_to_service(page: httpx.Response, acs_url: str) -> dict[str, str]:
    """The "Tillbaka till tjänsten" form of an IdP error page: shown, not auto-submitted."""
    fields = form_to_acs(page, acs_url)
    form = next(f for f in forms_of(page.text) if f.action == acs_url)
    assert "Tillbaka till tjänsten" in form.text, form.text
    assert 'lang="sv"' in page.text and 'lang="en"' in page.text  # the page says what happened
    assert ".submit()" not in page.text  # nothing submits it for the user
    return fields


def form_with_text(page: httpx.Response, text: str) -> PageForm:
    found = [form for form in forms_of(page.text) if text in form.text]
    assert len(found) == 1, f"no single form with {text!r}: {page.text[:3000]}"
    return found[0]


def saml_response_xml(fields: dict[str, str]) -> str:
    return base64.b64decode(fields["SAMLResponse"]).decode()

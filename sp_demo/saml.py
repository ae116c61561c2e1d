"""Mock Treserva as a SAML SP: its pysaml2 configuration, its metadata and the login messages.

pysaml2 builds, signs, parses and verifies. This module decides the policy around it: requests
are signed (RSA-SHA256), the Response *and* the Assertion must be signed by the IdP's key from
its metadata, a Response must answer a request this browser's session made (``InResponseTo``),
each request ID is accepted once, and the login must carry an HSA-ID at the Sambi LoA.

Every function that takes a :class:`~saml2.client.Saml2Client` blocks (pysaml2 runs the
``xmlsec1`` program): call it from a worker thread, never on the event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.cache import Cache
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import entity_descriptor, metadata_tostring_fix
from saml2.response import IncorrectlySigned, StatusError, UnsolicitedResponse
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_TRANSIENT
from saml2.sigver import MissingKey, SignatureError
from saml2.validate import ResponseLifetimeExceed, ToEarly, valid_instance

from sp_demo.config import Settings

XMLSEC_BINARY = "/usr/bin/xmlsec1"


class _WithoutTraceback(logging.Filter):
    """pysaml2 logs every Response it cannot parse with ``logger.exception``: a full traceback
    per garbage POST to the ACS, which anyone can send. The refusal is logged (one line, with
    its reason) by the ACS; pysaml2's line is kept, its traceback dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


logging.getLogger("saml2.response").addFilter(_WithoutTraceback())
SIG_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
DIGEST_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
ALGSUPPORT_NS = "urn:oasis:names:tc:SAML:metadata:algsupport"
STRONG_ALGORITHMS = frozenset(
    {
        DIGEST_SHA256,
        "http://www.w3.org/2001/04/xmlenc#sha512",
        SIG_RSA_SHA256,
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    }
)

SAMBI_HSA_ID = "http://sambi.se/attributes/1/employeeHsaId"
SAMBI_GIVEN_NAME = "http://sambi.se/attributes/1/givenName"
SAMBI_SURNAME = "http://sambi.se/attributes/1/surname"
SAMBI_ATTRIBUTES = (SAMBI_HSA_ID, SAMBI_GIVEN_NAME, SAMBI_SURNAME)
SAMBI_LOA3 = "http://id.sambi.se/loa/loa3"

# Session key under which outstanding AuthnRequest IDs are kept: {request_id: issued (epoch s)}.
OUTSTANDING_KEY = "saml_outstanding"
# A request older than this is forgotten; the IdP's own limit on a login is 10 minutes.
OUTSTANDING_TTL_SECONDS = 15 * 60
# Several tabs may start a login at once; more than this many pending ones is not a person.
MAX_OUTSTANDING = 5


class LoginResponseError(Exception):
    """A SAML Response that does not log anybody in.

    ``reason`` is a stable code for pages and logs: ``unsolicited`` (no request of this session
    has that ID, or it was used already), ``signature`` (missing or wrong signature),
    ``expired``, ``idp_status`` (the IdP answered with an error status, e.g. the user
    cancelled), ``attributes`` (no usable HSA-ID), ``loa`` (wrong AuthnContextClassRef) or
    ``invalid`` (anything else pysaml2 refuses). ``detail`` is for logs, not for users.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class LoginResult:
    """A verified login. JSON-serialisable through :meth:`to_dict` (it lives in the session)."""

    hsa_id: str
    given_name: str
    surname: str
    name_id: str
    name_id_format: str
    session_index: str
    authn_context_class_ref: str
    idp_entity_id: str
    authn_instant: str
    # The NameID's qualifiers, repeated in a LogoutRequest so it names the same subject.
    name_qualifier: str = ""
    sp_name_qualifier: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.surname}".strip()

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoginResult:
        return cls(**{name: str(data.get(name, "")) for name in cls.__dataclass_fields__})


def sp_config_dict(settings: Settings, idp_metadata_xml: str | None = None) -> dict[str, Any]:
    """The pysaml2 SP configuration; without IdP metadata it is good for making metadata only."""
    config: dict[str, Any] = {
        "entityid": settings.entity_id,
        "name": settings.display_name,
        "description": "Mock Treserva: social care documentation, demo",
        "service": {"sp": _sp_service(settings)},
        "key_file": str(settings.sp_key),
        "cert_file": str(settings.sp_cert),
        # The same key decrypts an EncryptedAssertion, should the IdP encrypt for us (the
        # metadata publishes the certificate for signing and encryption).
        "encryption_keypairs": [
            {"key_file": str(settings.sp_key), "cert_file": str(settings.sp_cert)}
        ],
        "xmlsec_binary": XMLSEC_BINARY,
        "signing_algorithm": SIG_RSA_SHA256,
        "digest_algorithm": DIGEST_SHA256,
        # Sambi attribute names are URIs no pysaml2 converter knows; keep them as they are.
        "allow_unknown_attributes": True,
        "accepted_time_diff": 60,
        **_publisher(),
        "delete_tmpfiles": True,
    }
    if idp_metadata_xml is not None:
        # Inline: the text was fetched (and its TLS or signature checked) by idp_metadata.py;
        # pysaml2's own "remote" loader would fetch with its own HTTP client and trust rules.
        config["metadata"] = {"inline": [idp_metadata_xml]}
    return config


def _publisher() -> dict[str, Any]:
    """Who publishes mock Treserva: the metadata's Organization and ContactPerson (new objects
    on every call, as pysaml2 keeps what it is given)."""
    return {
        "organization": {
            "name": [("Göteborgs Stad", "sv"), ("City of Gothenburg", "en")],
            "display_name": [("Göteborgs Stad", "sv"), ("City of Gothenburg", "en")],
            "url": [("https://goteborg.se", "sv")],
        },
        "contact_person": [
            {
                "contact_type": "technical",
                "given_name": "Treserva (demo)",
                "email_address": ["treserva-demo@example.invalid"],
            }
        ],
    }


def _sp_service(settings: Settings) -> dict[str, Any]:
    """pysaml2's ``service.sp``: endpoints, what must be signed, what is requested."""
    return {
        "name": settings.display_name,
        "endpoints": {
            "assertion_consumer_service": [(settings.acs_url, BINDING_HTTP_POST)],
            "single_logout_service": [
                (settings.slo_redirect_url, BINDING_HTTP_REDIRECT),
                (settings.slo_post_url, BINDING_HTTP_POST),
            ],
        },
        "authn_requests_signed": True,
        "want_response_signed": True,
        "want_assertions_signed": True,
        # A Response must answer one of our requests (InResponseTo): no IdP-initiated
        # login, so a captured Response cannot be replayed into another browser.
        "allow_unsolicited": False,
        # Published as AttributeConsumingService/RequestedAttribute: the IdP releases
        # only what is requested here.
        "required_attributes": list(SAMBI_ATTRIBUTES),
        "requested_attribute_name_format": NAME_FORMAT_URI,
        "name_id_format": [NAMEID_FORMAT_TRANSIENT],
        "ui_info": {
            "display_name": [
                {"text": settings.display_name, "lang": "sv"},
                {"text": settings.display_name, "lang": "en"},
            ],
            "description": [
                {"text": "Dokumentation inom socialtjänsten (demo)", "lang": "sv"},
                {"text": "Social care documentation (demo)", "lang": "en"},
            ],
        },
    }


def sp_config(settings: Settings, idp_metadata_xml: str | None = None) -> SPConfig:
    """A loaded :class:`SPConfig` (parses the IdP metadata, so it blocks)."""
    config = SPConfig()
    config.load(sp_config_dict(settings, idp_metadata_xml))
    return config


def build_sp_metadata_xml(settings: Settings, *, valid_hours: int | None = None) -> str:
    """This SP's metadata (unsigned): ACS, signing certificate, requested Sambi attributes.

    Without ``valid_hours`` it has no ``validUntil``: it is written to a file the IdP loads and
    must not silently expire there (a federation aggregate would set its own validity).
    """
    config = sp_config(settings)
    config.valid_for = valid_hours or 0
    descriptor = entity_descriptor(config)
    _advertise_only_strong_algorithms(descriptor)
    valid_instance(descriptor)
    metadata = metadata_tostring_fix(descriptor, {"xs": "http://www.w3.org/2001/XMLSchema"})
    return metadata.decode("utf-8") if isinstance(metadata, bytes) else metadata


def _advertise_only_strong_algorithms(descriptor: Any) -> None:
    # pysaml2 lists every algorithm the local xmlsec1 can do (MD5 and SHA-1 among them) as
    # supported; an IdP that honours the list could then pick one of those. We list ours.
    if descriptor.extensions is None:
        return
    kept = []
    for element in descriptor.extensions.extension_elements:
        algorithm = element.attributes.get("Algorithm")
        if element.namespace != ALGSUPPORT_NS or algorithm in STRONG_ALGORITHMS:
            kept.append(element)
    descriptor.extensions.extension_elements = kept
    if not kept and not descriptor.extensions.extension_attributes:
        descriptor.extensions = None


def build_client(settings: Settings, idp_metadata_xml: str) -> Saml2Client:
    """A client for exactly one IdP, described by ``idp_metadata_xml``.

    Raises :class:`ValueError` if the metadata does not describe exactly one IdP.
    """
    client = Saml2Client(sp_config(settings, idp_metadata_xml), identity_cache=_ForgetfulCache())
    idp_entity_id(client)  # fail now, not at the first login
    return client


class _ForgetfulCache(Cache):
    """An identity cache that keeps nothing.

    pysaml2 would otherwise keep every identity it has seen in process memory for the life of
    the client (a leak, and shared between threads). Mock Treserva keeps the login in the
    user's session instead. With this, a client holds no per-user state, so one client can
    serve concurrent requests.
    """

    def set(self, name_id: Any, entity_id: Any, info: Any, not_on_or_after: Any = 0) -> None:
        return None


def idp_entity_id(client: Saml2Client) -> str:
    """The entity ID of the one IdP the client knows."""
    identity_providers = list(client.metadata.identity_providers())
    if len(identity_providers) != 1:
        raise ValueError(
            f"the IdP metadata must describe exactly one IdP, found {len(identity_providers)}"
        )
    return identity_providers[0]


def start_login(client: Saml2Client, session: MutableMapping[str, Any]) -> str:
    """Make a signed AuthnRequest and return the IdP URL to redirect the browser to.

    HTTP-Redirect binding to the IdP's SSO URL from its metadata, signature RSA-SHA256 over the
    query. The request ID is remembered in ``session`` (under :data:`OUTSTANDING_KEY`), which
    :func:`parse_login_response` requires of the Response.
    """
    request_id, info = client.prepare_for_authenticate(
        entityid=idp_entity_id(client),
        binding=BINDING_HTTP_REDIRECT,
        sign=True,
        sigalg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    outstanding = _live_outstanding(session)
    outstanding[request_id] = int(time.time())
    # Keep only the newest few: the session is a cookie, and older tabs are abandoned.
    newest = sorted(outstanding.items(), key=lambda item: item[1])[-MAX_OUTSTANDING:]
    session[OUTSTANDING_KEY] = dict(newest)
    return str(dict(info["headers"])["Location"])


def parse_login_response(
    client: Saml2Client,
    saml_response: str,
    session: MutableMapping[str, Any],
    *,
    required_authn_context: str | None = SAMBI_LOA3,
) -> LoginResult:
    """Verify a base64 SAML Response posted to the ACS and return who logged in.

    Accepted only if pysaml2 verifies it (Response and Assertion signed by the IdP's key,
    Destination/Recipient our ACS, Audience our entity ID, within its validity) and its
    ``InResponseTo`` is a request this ``session`` made and has not used yet; that request is
    then forgotten. ``required_authn_context`` (None: any) must be the AuthnContextClassRef.
    Raises :class:`LoginResponseError` for anything else.
    """
    outstanding = _live_outstanding(session)
    session[OUTSTANDING_KEY] = outstanding
    # pysaml2 wants {request_id: where the user came from}; we always return to /me.
    queries = dict.fromkeys(outstanding, "/me")
    try:
        response = client.parse_authn_request_response(
            saml_response, BINDING_HTTP_POST, outstanding=queries
        )
    except UnsolicitedResponse as error:
        raise LoginResponseError("unsolicited", str(error)) from error
    except (IncorrectlySigned, SignatureError, MissingKey) as error:
        raise LoginResponseError("signature", f"{type(error).__name__}: {error}") from error
    except (ResponseLifetimeExceed, ToEarly) as error:
        raise LoginResponseError("expired", f"{type(error).__name__}: {error}") from error
    except StatusError as error:
        raise LoginResponseError("idp_status", f"{type(error).__name__}: {error}") from error
    except Exception as error:
        # pysaml2 signals many refusals with plain exceptions (even AssertionError): all of
        # them mean "not a valid Response for us", and none may become a 500.
        raise LoginResponseError("invalid", f"{type(error).__name__}: {error}") from error
    if response is None or response.assertion is None:
        raise LoginResponseError("invalid", "no assertion in the Response")
    in_response_to = response.in_response_to
    if in_response_to not in outstanding:  # pysaml2 checked this too; cheap to be sure
        raise LoginResponseError("unsolicited", f"InResponseTo {in_response_to!r}")
    del outstanding[in_response_to]
    session[OUTSTANDING_KEY] = outstanding
    return _login_result(response, required_authn_context)


def _login_result(response: Any, required_authn_context: str | None) -> LoginResult:
    ava: dict[str, list[str]] = response.ava
    hsa_id = _single_value(ava, SAMBI_HSA_ID)
    if not hsa_id:
        raise LoginResponseError("attributes", "no single employeeHsaId in the assertion")
    authn = response.authn_info()
    if len(authn) != 1:
        raise LoginResponseError("invalid", f"{len(authn)} AuthnStatements, expected 1")
    class_ref, _authorities, authn_instant = authn[0]
    if required_authn_context and class_ref != required_authn_context:
        raise LoginResponseError("loa", f"AuthnContextClassRef {class_ref!r}")
    name_id = response.name_id
    statement = response.assertion.authn_statement[0]
    return LoginResult(
        hsa_id=hsa_id,
        given_name=_single_value(ava, SAMBI_GIVEN_NAME) or "",
        surname=_single_value(ava, SAMBI_SURNAME) or "",
        name_id=name_id.text if name_id is not None else "",
        name_id_format=(name_id.format or "") if name_id is not None else "",
        session_index=statement.session_index or "",
        authn_context_class_ref=class_ref,
        idp_entity_id=response.issuer() or "",
        authn_instant=str(authn_instant or ""),
        name_qualifier=(name_id.name_qualifier or "") if name_id is not None else "",
        sp_name_qualifier=(name_id.sp_name_qualifier or "") if name_id is not None else "",
    )


def _single_value(ava: Mapping[str, list[str]], name: str) -> str | None:
    values = ava.get(name) or []
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    return values[0].strip() or None


def _live_outstanding(session: Mapping[str, Any]) -> dict[str, int]:
    """The session's outstanding request IDs that have not timed out (a fresh dict)."""
    stored = session.get(OUTSTANDING_KEY)
    if not isinstance(stored, dict):
        return {}
    oldest = time.time() - OUTSTANDING_TTL_SECONDS
    return {
        str(request_id): int(issued)
        for request_id, issued in stored.items()
        if isinstance(issued, int | float) and issued >= oldest
    }

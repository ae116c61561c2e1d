"""The SAML IdP: pysaml2's ``Server`` with the checks this service adds on top.

pysaml2 reads SP metadata, parses requests and verifies their enveloped signatures (through
the in-process backend, :mod:`idp.saml.xmlsec_backend`). This module adds what pysaml2 leaves
to its caller or gets too loose for an IdP: per-SP signed-request policy read from the SP's
metadata, redirect-binding signatures verified over the exact query octets received, ACS URLs
only from metadata and only https (idp/saml/acs.py, the rule `idp metadata validate`
applies), tight IssueInstant checks, attribute release per profile, and the Assertion
encrypted for an SP that publishes an encryption key (idp/saml/encryption.py). Responses
are built and signed by :mod:`idp.saml.response`, with the signing key of the same
configuration snapshot as the metadata.

Every method here blocks (file checks, XML signatures): call it from a worker thread.
"""

from __future__ import annotations

import base64
import calendar
import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import os
import threading
import urllib.parse
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.saml import (
    NAMEID_FORMAT_PERSISTENT,
    NAMEID_FORMAT_TRANSIENT,
    NAMEID_FORMAT_UNSPECIFIED,
)
from saml2.server import Server
from saml2.sigver import CryptoBackend, SignatureError
from saml2.time_util import str_to_time

from idp import attributes
from idp.audit import AuditHook
from idp.authn import Authentication
from idp.config import Settings
from idp.errors import Refusal
from idp.saml.acs import acs_location_problem
from idp.saml.authn_request import (
    AUTHN_REQUEST,
    AuthnRequestXml,
    NameIdPolicy,
    read_authn_request,
)
from idp.saml.bindings import BindingMessage, RedirectSignatureInvalid, verify_query_signature
from idp.saml.encryption import (
    EncryptionError,
    Recipient,
    choose_recipient,
    encryption_refusal,
    offers_from_descriptor,
)
from idp.saml.loa import AuthnContextNotMet, choose_authn_context, requested_context
from idp.saml.messages import (
    MessageRejected,
    decode_post_message,
    decode_redirect_message,
)
from idp.saml.reasons import SamlReason
from idp.saml.response import (
    Addressing,
    BuiltResponse,
    NameId,
    ResponseSigner,
    Subject,
    build_login_response,
    build_status_response,
    new_subject,
    released_attributes,
)
from idp.saml.rollover import SigningKeys, signing_keys, state_stamp
from idp.saml.statuses import ErrorStatus
from idp.saml.xmlsec_backend import RSA_SHA256 as SIG_RSA_SHA256
from idp.saml.xmlsec_backend import SHA256 as DIGEST_SHA256
from idp.saml.xmlsec_backend import shared_backend
from idp.xml_schema_types import NotABoolean, xs_boolean

logger = logging.getLogger("idp.saml")
XMLSEC_BINARY = "/usr/bin/xmlsec1"
ASSERTION_LIFETIME = dt.timedelta(minutes=5)


class SamlRequestRejected(Refusal):
    """The AuthnRequest is refused. No Response may be sent: the SP is not trusted to get one."""


class SamlRequestNotMet(Refusal):
    """A valid request from a known SP asks for what the IdP cannot do: the SP gets the status
    for ``reason`` (:data:`idp.saml.statuses.SAML_STATUS`) in a signed Response to
    ``request`` (at the ACS from its metadata)."""

    def __init__(self, request: AuthnRequestInfo, reason: SamlReason, detail: str) -> None:
        super().__init__(reason, detail)
        self.request = request


class SamlResponseRefused(Refusal):
    """A finished login's Response may not be sent (a directory value XML cannot carry, SP
    metadata that no longer allows an answer, encryption failed): nothing goes to the SP."""


@dataclass(frozen=True)
class ServiceProvider:
    """What the IdP knows about an SP, all of it from the SP's metadata."""

    entity_id: str
    display_name: str
    acs_post_urls: tuple[tuple[str, int | None, bool], ...]  # (location, index, isDefault)
    authn_requests_signed: bool
    signing_certificates: tuple[x509.Certificate, ...]
    requested_attributes: tuple[str, ...]
    entity_categories: tuple[str, ...]
    profile: attributes.AttributeProfile = field(compare=False)
    # Why Responses may not go to this SP's ACS locations (idp/saml/acs.py), the rule
    # `idp metadata validate` applies too; any problem makes the SP unusable, as there.
    acs_problems: tuple[str, ...] = ()
    # The SP's usable encryption key and algorithms: its Assertions are sent only encrypted.
    encryption: Recipient | None = field(default=None, compare=False)
    # Why no login may be answered for this SP (its profile requires encryption, and it has
    # no usable encryption key), or None.
    encryption_refusal: str | None = None

    def default_acs(self) -> str | None:
        if not self.acs_post_urls:
            return None
        for location, _index, is_default in self.acs_post_urls:
            if is_default:
                return location
        return sorted(self.acs_post_urls, key=lambda acs: acs[1] if acs[1] is not None else 0)[0][0]


@dataclass(frozen=True)
class AuthnRequestInfo:
    """An accepted AuthnRequest, reduced to what the response needs (JSON-serialisable)."""

    request_id: str
    sp_entity_id: str
    acs_url: str
    relay_state: str
    force_authn: bool
    is_passive: bool
    # What the Response asserts, decided when the request was read (RequestedAuthnContext,
    # NameIDPolicy); empty means the SP's profile default.
    authn_context_class: str = ""
    name_id_format: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "sp_entity_id": self.sp_entity_id,
            "acs_url": self.acs_url,
            "relay_state": self.relay_state,
            "force_authn": self.force_authn,
            "is_passive": self.is_passive,
            "authn_context_class": self.authn_context_class,
            "name_id_format": self.name_id_format,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuthnRequestInfo:
        return cls(**data)


def _idp_service(base: str) -> dict[str, Any]:
    """pysaml2's ``service.idp`` section: the IdP's endpoints, NameID formats and UI info."""
    return {
        "name": "Göteborgs Stads Åtkomsttjänst",
        "endpoints": {
            "single_sign_on_service": [
                (f"{base}/saml/sso/redirect", BINDING_HTTP_REDIRECT),
                (f"{base}/saml/sso/post", BINDING_HTTP_POST),
            ],
            # Single Logout (idp/saml/logout.py, idp/saml/slo_endpoints.py).
            "single_logout_service": [
                (f"{base}/saml/slo/redirect", BINDING_HTTP_REDIRECT),
                (f"{base}/saml/slo/post", BINDING_HTTP_POST),
            ],
        },
        "name_id_format": [NAMEID_FORMAT_TRANSIENT, NAMEID_FORMAT_PERSISTENT],
        # Enforced per SP from its metadata (AuthnRequestsSigned), see parse_authn_request.
        "want_authn_requests_signed": False,
        "ui_info": {
            "display_name": [
                {"text": "Göteborgs Stads Åtkomsttjänst", "lang": "sv"},
                {"text": "City of Gothenburg Access Service", "lang": "en"},
            ],
            "description": [
                {
                    "text": "Inloggning med SITHS eID för Göteborgs Stads system",
                    "lang": "sv",
                },
                {
                    "text": "SITHS eID login for the City of Gothenburg's systems",
                    "lang": "en",
                },
            ],
        },
    }


def _organisation() -> dict[str, Any]:
    """The organisation and contact the IdP's metadata names (fresh each time: pysaml2 is
    handed its own copy of every configuration)."""
    return {
        "organization": {
            "name": [("Göteborgs Stad", "sv"), ("City of Gothenburg", "en")],
            "display_name": [("Göteborgs Stad", "sv"), ("City of Gothenburg", "en")],
            "url": [("https://goteborg.se", "sv")],
        },
        "contact_person": [
            {
                "contact_type": "technical",
                "given_name": "Åtkomsttjänsten",
                "email_address": ["atkomsttjansten@example.invalid"],
            }
        ],
    }


def _pysaml2_config(
    settings: Settings, metadata_files: list[str], crypto: CryptoBackend | None = None
) -> IdPConfig:
    """pysaml2's configuration with the SP metadata in ``metadata_files`` loaded.

    With ``crypto``, the metadata store's own security context uses it: the store builds that
    context (an ``xmlsec1`` one) in its constructor, so it is swapped before any metadata is
    loaded and a signed metadata source would be checked with ``crypto`` too.
    """
    # The current signing key: the configured one, or the one a key rollover switched to.
    keys = signing_keys(settings)
    config = {
        "entityid": settings.entity_id,
        "name": "Göteborgs Stads Åtkomsttjänst",
        "description": "Göteborgs Stads Åtkomsttjänst (inloggning med SITHS eID)",
        "service": {"idp": _idp_service(settings.base_url)},
        "key_file": str(keys.key_file),
        "cert_file": str(keys.cert_file),
        "xmlsec_binary": XMLSEC_BINARY,
        # An empty store; the files are loaded below, once the store has the right backend.
        "metadata": {},
        "signing_algorithm": SIG_RSA_SHA256,
        "digest_algorithm": DIGEST_SHA256,
        "only_use_keys_in_metadata": True,
        "accepted_time_diff": 60,
        "allow_unknown_attributes": True,
        "valid_for": 24,
        **_organisation(),
        "delete_tmpfiles": True,
    }
    idp_config = IdPConfig()
    idp_config.load(config)
    store = idp_config.metadata
    if crypto is not None:
        store.security.crypto = crypto
    store.imp({"local": metadata_files})
    return idp_config


def _display_name(metadata: Any, entity_id: str, descriptor: dict[str, Any]) -> str:
    """The SP's name for people: mdui DisplayName, then ServiceName, then organisation name."""
    for language in ("sv", "en"):
        for info in (descriptor.get("extensions") or {}).get("extension_elements", []):
            for display in info.get("display_name", []) if isinstance(info, dict) else []:
                if display.get("lang") == language and display.get("text"):
                    return str(display["text"])
    for service in descriptor.get("attribute_consuming_service", []):
        for service_name in service.get("service_name", []):
            if service_name.get("text"):
                return str(service_name["text"])
    for language in ("sv", "en"):
        organisation = metadata.name(entity_id, language)
        if organisation:
            return str(organisation)
    return urllib.parse.urlsplit(entity_id).hostname or entity_id


def _acs_post_urls(descriptor: dict[str, Any]) -> tuple[tuple[str, int | None, bool], ...]:
    """The SP's HTTP-POST AssertionConsumerServices: (location, index, isDefault)."""
    return tuple(
        (
            service["location"],
            int(service["index"]) if service.get("index") is not None else None,
            _metadata_boolean(service.get("is_default"), default=False),
        )
        for service in descriptor.get("assertion_consumer_service", [])
        if service.get("binding") == BINDING_HTTP_POST
    )


def _requested_attributes(metadata: Any, entity_id: str) -> tuple[str, ...]:
    """The names the SP's AttributeConsumingService asks for, required and optional."""
    requirement = metadata.attribute_requirement(entity_id) or {}
    return tuple(
        attribute["name"]
        for attribute in [*requirement.get("required", []), *requirement.get("optional", [])]
    )


def _signing_certificates(metadata: Any, entity_id: str) -> tuple[x509.Certificate, ...]:
    """The SP's signing certificates; one that does not parse is left out."""
    certificates = []
    for _name, pem in metadata.certs(entity_id, "spsso", "signing"):
        try:
            certificates.append(
                x509.load_der_x509_certificate(base64.b64decode("".join(pem.split())))
            )
        except ValueError:
            continue
    return tuple(certificates)


class _NameIdPolicyNotMet(Exception):
    pass


def _choose_name_id_format(policy: NameIdPolicy | None, sp: ServiceProvider) -> str:
    """The NameID format to send: the SP's default for none or ``unspecified``, transient or
    persistent (pairwise) when asked; anything else, or a qualifier naming another SP (we have
    no affiliations), is not met."""
    if policy is None:
        return sp.profile.name_id_format
    if policy.sp_name_qualifier and policy.sp_name_qualifier != sp.entity_id:
        raise _NameIdPolicyNotMet(f"SPNameQualifier {policy.sp_name_qualifier[:100]}")
    wanted = policy.format or NAMEID_FORMAT_UNSPECIFIED
    if wanted == NAMEID_FORMAT_UNSPECIFIED:
        return sp.profile.name_id_format
    if wanted in (NAMEID_FORMAT_TRANSIENT, NAMEID_FORMAT_PERSISTENT):
        return wanted
    raise _NameIdPolicyNotMet(f"NameID format {wanted[:100]} is not supported")


def _choose_authn_context(message: AuthnRequestXml, sp: ServiceProvider) -> str:
    requested = message.requested_context
    if requested is None:
        return sp.profile.loa
    if requested.has_decl_ref:
        raise AuthnContextNotMet("AuthnContextDeclRef is not supported")
    refs = list(requested.class_refs)
    try:
        return choose_authn_context(requested_context(refs, requested.comparison), sp.profile.loa)
    except ValueError as exc:
        raise SamlRequestRejected(SamlReason.MALFORMED_REQUEST, str(exc)) from exc


def _request_boolean(value: object, name: str) -> bool:
    """An xs:boolean attribute of a request (absent: false); not a boolean: the request is
    refused, since guessing could skip a ForceAuthn the SP asked for."""
    try:
        return xs_boolean(value, default=False)
    except NotABoolean as exc:
        raise SamlRequestRejected(SamlReason.MALFORMED_REQUEST, f"{name}: {exc}") from exc


def _what_to_assert(
    info: AuthnRequestInfo, message: AuthnRequestXml, sp: ServiceProvider
) -> AuthnRequestInfo:
    """``info`` with the NameID format and LoA to assert, from NameIDPolicy and
    RequestedAuthnContext; raises :class:`SamlRequestNotMet` where they cannot be met."""
    policy = message.name_id_policy
    if policy is not None:
        # Only checked for its form: every person has a pairwise identifier in advance
        # (derived, SAML Core 3.4.1.1), so AllowCreate="false" is met too.
        _request_boolean(policy.allow_create, "AllowCreate")
    try:
        return dataclasses.replace(
            info,
            name_id_format=_choose_name_id_format(policy, sp),
            authn_context_class=_choose_authn_context(message, sp),
        )
    except AuthnContextNotMet as exc:
        raise SamlRequestNotMet(info, SamlReason.NO_AUTHN_CONTEXT, str(exc)) from exc
    except _NameIdPolicyNotMet as exc:
        raise SamlRequestNotMet(info, SamlReason.INVALID_NAME_ID_POLICY, str(exc)) from exc


def _metadata_boolean(value: object, *, default: bool, broken: bool = False) -> bool:
    """An xs:boolean attribute of SP metadata; ``broken`` is what a non-boolean value means
    (metadata is checked by ``idp metadata validate``; at runtime the safer reading wins)."""
    try:
        return xs_boolean(value, default=default)
    except NotABoolean:
        return broken


def _directory_stamp(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime_ns, size) of every ``*.xml`` file in ``directory``, sorted by path: it
    changes whenever a file is added, removed or rewritten. Asked on every SAML call, so one
    directory read and one stat per file, without pathlib's objects (a third of the cost)."""
    try:
        entries = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return ()
    stamp = []
    with entries:
        for entry in entries:
            if entry.name.endswith(".xml") and entry.is_file():
                stat = entry.stat()
                stamp.append((entry.path, stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(stamp))


@dataclass(frozen=True)
class _Snapshot:
    server: Server
    signer: ResponseSigner


@dataclass(frozen=True)
class PlannedResponse:
    """A Response decided but not built (:meth:`SamlIdentityProvider.plan_authn_response`):
    the configuration that signs it, its SP as that configuration describes it, and how it
    names the user."""

    snapshot: _Snapshot
    sp: ServiceProvider
    subject: Subject


class SpMetadataSource(Protocol):
    """SP metadata from beyond ``sp_metadata_dir``: a remote signed aggregate
    (:class:`idp.federation.remote.RemoteAggregate`), wired in at start-up."""

    def metadata_files(self) -> list[str]:
        """The verified files to load now; [] when there is none (or it expired)."""
        ...


class SamlIdentityProvider:
    """The IdP's SAML side. Thread-safe; SP metadata is re-read when the directory changes.

    ``remote``: more SP metadata (started by the caller, so the first server already has it).
    """

    def __init__(
        self,
        settings: Settings,
        pairwise_secret: bytes,
        audit: AuditHook | None = None,
        *,
        remote: SpMetadataSource | None = None,
    ) -> None:
        self._settings = settings
        self._remote = remote
        self._pairwise_secret = pairwise_secret
        self._audit = audit
        # Verifies AuthnRequest signatures on the tree they were read from (keys cached).
        self._backend = shared_backend(XMLSEC_BINARY)
        unknown = set(settings.require_encryption_profiles) - {p.name for p in attributes.PROFILES}
        if unknown:
            raise ValueError(
                f"IDP_REQUIRE_ENCRYPTION_PROFILES names unknown profiles {sorted(unknown)}; "
                f"known: {[profile.name for profile in attributes.PROFILES]}"
            )
        self._lock = threading.Lock()
        self._stamp: tuple[object, ...] | None = None
        self._current: _Snapshot | None = None
        # Per pysaml2 server (one per metadata snapshot): the SPs described so far. Weak keys:
        # a replaced snapshot's descriptions go with it.
        self._descriptions: weakref.WeakKeyDictionary[Server, dict[str, ServiceProvider]] = (
            weakref.WeakKeyDictionary()
        )
        self._sso_urls = {
            BINDING_HTTP_REDIRECT: f"{settings.base_url}/saml/sso/redirect",
            BINDING_HTTP_POST: f"{settings.base_url}/saml/sso/post",
        }
        self.server()

    def server(self) -> Server:
        """The current pysaml2 server, rebuilt if the SP metadata directory changed."""
        return self._snapshot().server

    def _snapshot(self) -> _Snapshot:
        """The pysaml2 server and the Response signer of one configuration, taken together."""
        directory = _directory_stamp(self._settings.sp_metadata_dir)
        # A key rollover step (idp keys rollover) changes the signing key: rebuild then too.
        remote = self._remote.metadata_files() if self._remote is not None else []
        stamp = (
            *directory,
            ("rollover", state_stamp(self._settings)),
            # A new accepted aggregate, or the accepted one reaching its validUntil ([]).
            ("remote", tuple((name, Path(name).stat().st_mtime_ns) for name in remote)),
        )
        with self._lock:
            if self._current is None or stamp != self._stamp:
                files = [name for name, _mtime, _size in directory] + remote
                # Sign and verify in-process (see xmlsec_backend); Assertions are encrypted
                # in-process too (idp/saml/encryption.py), never through pysaml2's hooks.
                crypto = shared_backend(XMLSEC_BINARY)
                server = Server(config=_pysaml2_config(self._settings, files, crypto))
                # Entity.__init__ built server.sec with pysaml2's xmlsec1 backend: replace it.
                # server.sec signs Responses and Assertions and checks AuthnRequest signatures;
                # the metadata store (same object as server.metadata) got crypto above.
                server.sec.crypto = crypto
                if server.metadata.security.crypto is not crypto:
                    # A pysaml2 that builds its metadata store differently: fail loudly rather
                    # than verify metadata with xmlsec1 behind our back.
                    raise RuntimeError("pysaml2's metadata store does not use the backend")
                keys = signing_keys(self._settings)
                signer = ResponseSigner(
                    crypto.private_key(str(keys.key_file)),
                    ResponseSigner.certificate_text(keys.cert_file),
                )
                self._current, self._stamp = _Snapshot(server, signer), stamp
                # This reads every SP once (_describe_sp), so an unusable encryption key or ACS
                # is logged when the metadata is loaded, not first when somebody logs in.
                self._report_unreleased_attributes(server)
            return self._current

    def _report_unreleased_attributes(self, server: Server) -> None:
        """Say, once per metadata load, which SP asks for an attribute it will not get (a name
        of neither profile, or of the other profile): its logins would silently lack it."""
        for entity_id in server.metadata.with_descriptor("spsso"):
            sp = self._describe_sp(server, entity_id)
            if sp is None:
                continue
            released = set(
                attributes.released_names(sp.profile, sp.requested_attributes, sp.entity_categories)
            )
            missing = [name for name in sp.requested_attributes if name not in released]
            if not missing:
                continue
            detail = (
                f"{entity_id}: requested attribute not released ({sp.profile.name} profile): "
                + ", ".join(name[:100] for name in missing[:10])
            )
            logger.warning("%s", detail)
            if self._audit is None:
                continue
            # The warning is logged already; a failed audit write must not stop SAML.
            try:
                self._audit("saml.requested_attribute_not_released", "warning", detail)
            except Exception:
                logger.exception("could not audit an unreleased attribute")

    # --- metadata ----------------------------------------------------------------------------

    def signing_keys(self) -> SigningKeys:
        """The key that signs now and the one published beside it during a rollover; the
        IdP's metadata (:mod:`idp.federation.idp_metadata`) names both."""
        return signing_keys(self._settings)

    def describe_sp(self, entity_id: str) -> ServiceProvider | None:
        """What the SP's metadata says, or None if no metadata names this entity."""
        return self._describe_sp(self.server(), entity_id)

    def _describe_sp(self, server: Server, entity_id: str) -> ServiceProvider | None:
        # Callers that already hold a server pass it: one metadata snapshot per operation, and
        # no second directory scan on the request's path. A snapshot's metadata never changes,
        # so each SP is described once per snapshot (its certificates parsed, its ACS and
        # encryption key judged), not on every request. Only SPs the metadata names are kept:
        # an Issuer nobody knows must not grow the memory.
        known = self._descriptions.setdefault(server, {})
        sp = known.get(entity_id)
        if sp is None:
            sp = self._description(server, entity_id)
            if sp is not None:
                known[entity_id] = sp
        return sp

    def _description(self, server: Server, entity_id: str) -> ServiceProvider | None:
        metadata = server.metadata
        try:
            entity = metadata[entity_id]
        except KeyError:
            return None
        descriptors = entity.get("spsso_descriptor") or []
        if not descriptors:
            return None
        descriptor = descriptors[0]
        acs = _acs_post_urls(descriptor)
        acs_problems = tuple(
            problem
            for location, _index, _default in acs
            if (
                problem := acs_location_problem(
                    location, allow_http_loopback=self._settings.allow_http_loopback_acs
                )
            )
        )
        requested = _requested_attributes(metadata, entity_id)
        categories = tuple(metadata.entity_categories(entity_id))
        certificates = _signing_certificates(metadata, entity_id)
        display_name = _display_name(metadata, entity_id, descriptor)
        profile = attributes.choose_profile(requested, categories)
        encryption = choose_recipient(entity_id, offers_from_descriptor(descriptor))
        return ServiceProvider(
            entity_id=entity_id,
            display_name=display_name,
            acs_post_urls=acs,
            # A value that is not a boolean is read as "signed": the stricter reading.
            authn_requests_signed=_metadata_boolean(
                descriptor.get("authn_requests_signed"), default=False, broken=True
            ),
            signing_certificates=certificates,
            requested_attributes=requested,
            entity_categories=categories,
            profile=profile,
            acs_problems=acs_problems,
            encryption=encryption.recipient,
            encryption_refusal=encryption_refusal(
                profile.name, self._settings.require_encryption_profiles, encryption
            ),
        )

    # --- requests ----------------------------------------------------------------------------

    def parse_authn_request(
        self, binding: str, received: BindingMessage
    ) -> tuple[AuthnRequestInfo, ServiceProvider]:
        """Read, verify and check an AuthnRequest; raise :class:`SamlRequestRejected` if bad,
        and :class:`SamlRequestNotMet` if its SP is to be told the IdP cannot do what it asks.

        ``received`` comes from :mod:`idp.saml.bindings`: for HTTP-Redirect its query signature
        covers exactly the octets ``received.text`` and ``received.relay_state`` were read from.
        """
        message = self._read_authn_request(binding, received)
        sp = self._trusted_sender(self.server(), message, binding, received)
        self._check_timing_and_destination(message, binding)
        acs_url = self._choose_acs(message, sp)
        if not message.id:
            raise SamlRequestRejected(SamlReason.MALFORMED_REQUEST, "the request has no ID")
        info = AuthnRequestInfo(
            request_id=message.id,
            sp_entity_id=sp.entity_id,
            acs_url=acs_url,
            relay_state=received.relay_state,
            force_authn=_request_boolean(message.force_authn, "ForceAuthn"),
            is_passive=_request_boolean(message.is_passive, "IsPassive"),
        )
        return _what_to_assert(info, message, sp), sp

    def _read_authn_request(self, binding: str, received: BindingMessage) -> AuthnRequestXml:
        """Decode (bounded, no DTD) and parse the request once, schema-checked."""
        limit = self._settings.saml_max_request_bytes
        try:
            if binding == BINDING_HTTP_REDIRECT:
                xml = decode_redirect_message(received.text, limit)
            else:
                xml = decode_post_message(received.text, limit)
            return read_authn_request(xml.encode("utf-8"))
        except MessageRejected as exc:
            raise SamlRequestRejected(exc.reason, exc.detail) from exc

    def _trusted_sender(
        self,
        server: Server,
        message: AuthnRequestXml,
        binding: str,
        received: BindingMessage,
    ) -> ServiceProvider:
        """The SP that sent ``message``: known by metadata, signed as its metadata says, and
        one the IdP may answer at all."""
        issuer = message.issuer
        if not issuer:
            raise SamlRequestRejected(SamlReason.MALFORMED_REQUEST, "the request has no Issuer")
        sp = self._describe_sp(server, issuer)
        if sp is None:
            raise SamlRequestRejected(SamlReason.UNKNOWN_SP, f"no metadata for {issuer}")
        if message.signed:
            self._verify_enveloped_signature(message, sp)
        if binding == BINDING_HTTP_REDIRECT:
            signed = self._verify_redirect_signature(received, sp)
        else:
            signed = message.signed
        if sp.authn_requests_signed and not signed:
            raise SamlRequestRejected(
                SamlReason.UNSIGNED_REQUEST, "the SP's metadata says its requests are signed"
            )
        self._check_usable(sp)
        return sp

    @staticmethod
    def _check_usable(sp: ServiceProvider) -> None:
        """Refuse, before anybody logs in, an SP that could never be answered safely."""
        if sp.acs_problems:
            raise SamlRequestRejected(SamlReason.INSECURE_ACS, "; ".join(sp.acs_problems))
        if sp.encryption_refusal:
            raise SamlRequestRejected(SamlReason.ENCRYPTION_REQUIRED, sp.encryption_refusal)

    def _verify_enveloped_signature(self, message: AuthnRequestXml, sp: ServiceProvider) -> None:
        """Verify the request's enveloped signature, on the tree its values were read from,
        with the signing keys of the SP's metadata (never a key in the message)."""
        try:
            keys = [
                self._backend.certificate_key_of(certificate.public_bytes(Encoding.DER))
                for certificate in sp.signing_certificates
            ]
            self._backend.verify_enveloped(message.root, AUTHN_REQUEST, keys)
        except SignatureError as exc:
            raise SamlRequestRejected(
                SamlReason.BAD_SIGNATURE, f"the request's signature is invalid ({exc})"[:300]
            ) from exc

    @staticmethod
    def _verify_redirect_signature(received: BindingMessage, sp: ServiceProvider) -> bool:
        """Verify the HTTP-Redirect signature; True if signed and valid, False if unsigned."""
        if received.query_signature is None:
            return False
        try:
            verify_query_signature(received.query_signature, sp.signing_certificates)
        except RedirectSignatureInvalid as exc:
            raise SamlRequestRejected(SamlReason.BAD_SIGNATURE, exc.detail) from exc
        return True

    def _check_timing_and_destination(self, message: AuthnRequestXml, binding: str) -> None:
        if message.version != "2.0":
            raise SamlRequestRejected(SamlReason.MALFORMED_REQUEST, "SAML version must be 2.0")
        if message.destination and message.destination != self._sso_urls[binding]:
            raise SamlRequestRejected(
                SamlReason.WRONG_DESTINATION,
                f"Destination {message.destination} is not this endpoint",
            )
        try:
            issued = dt.datetime.fromtimestamp(
                calendar.timegm(str_to_time(message.issue_instant)), dt.UTC
            )
        except (TypeError, ValueError) as exc:
            raise SamlRequestRejected(
                SamlReason.MALFORMED_REQUEST, "IssueInstant is not a time"
            ) from exc
        skew = dt.timedelta(seconds=self._settings.saml_clock_skew_seconds)
        if abs(issued - dt.datetime.now(dt.UTC)) > skew:
            raise SamlRequestRejected(
                SamlReason.STALE_REQUEST, f"IssueInstant {message.issue_instant}"
            )

    @staticmethod
    def _choose_acs(message: AuthnRequestXml, sp: ServiceProvider) -> str:
        if message.protocol_binding and message.protocol_binding != BINDING_HTTP_POST:
            raise SamlRequestRejected(
                SamlReason.UNSUPPORTED_BINDING, f"ProtocolBinding {message.protocol_binding}"
            )
        known = {location for location, _index, _default in sp.acs_post_urls}
        if message.acs_url:
            if message.acs_url not in known:
                raise SamlRequestRejected(
                    SamlReason.ACS_NOT_IN_METADATA,
                    f"{message.acs_url} is not an ACS in the SP's metadata",
                )
            return message.acs_url
        if message.acs_index is not None:
            wanted = int(message.acs_index)
            for location, index, _default in sp.acs_post_urls:
                if index == wanted:
                    return location
            raise SamlRequestRejected(SamlReason.ACS_NOT_IN_METADATA, f"no ACS with index {wanted}")
        default = sp.default_acs()
        if default is None:
            raise SamlRequestRejected(SamlReason.ACS_NOT_IN_METADATA, "the SP has no HTTP-POST ACS")
        return default

    # --- responses ---------------------------------------------------------------------------

    def _name_id(
        self, sp: ServiceProvider, name_id_format: str, authentication: Authentication
    ) -> NameId:
        if name_id_format == NAMEID_FORMAT_PERSISTENT:
            # A per-SP pseudonym: stable for one SP, unlinkable across SPs.
            value = hmac.new(
                self._pairwise_secret,
                f"{sp.entity_id}\x00{authentication.hsa_id}".encode(),
                hashlib.sha256,
            ).hexdigest()
        else:
            value = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
        return NameId(
            value=value,
            format=name_id_format,
            name_qualifier=self._settings.entity_id,
            sp_name_qualifier=sp.entity_id,
        )

    def plan_authn_response(
        self, request: AuthnRequestInfo, authentication: Authentication
    ) -> PlannedResponse:
        """A Response to ``request`` decided before it is built: the configuration and SP it is
        built for, and how it names the user (the NameID for that SP and a fresh SessionIndex),
        so that the SSO session's participant is recorded with the login
        (:mod:`idp.saml.participants`). Raises :class:`SamlRequestRejected` when the SP's
        metadata no longer allows an answer (gone, an ACS that may not receive one, encryption
        required but no key)."""
        snapshot = self._snapshot()
        sp = self._describe_sp(snapshot.server, request.sp_entity_id)
        if sp is None:
            raise SamlRequestRejected(
                SamlReason.UNKNOWN_SP, f"no metadata for {request.sp_entity_id}"
            )
        # The metadata may have changed since the request was accepted.
        self._check_usable(sp)
        name_id_format = request.name_id_format or sp.profile.name_id_format
        subject = new_subject(self._name_id(sp, name_id_format, authentication))
        return PlannedResponse(snapshot, sp, subject)

    def build_authn_response(
        self,
        request: AuthnRequestInfo,
        authentication: Authentication,
        planned: PlannedResponse | None = None,
    ) -> BuiltResponse:
        """A signed Response with a signed Assertion for the SP that sent ``request``, as
        ``planned`` (:meth:`plan_authn_response`; None: planned here).

        The Assertion is encrypted for an SP with a usable encryption key. Raises
        :class:`SamlRequestRejected` as :meth:`plan_authn_response` does, or when encryption
        fails: the Assertion is never sent in clear instead.
        """
        if planned is None:
            planned = self.plan_authn_response(request, authentication)
        sp = planned.sp
        names = attributes.released_names(sp.profile, sp.requested_attributes, sp.entity_categories)
        try:
            return build_login_response(
                Addressing(self._settings.entity_id, request.acs_url, request.request_id),
                audience=sp.entity_id,
                subject=planned.subject,
                authn_instant=authentication.authn_instant,
                authn_context_class=request.authn_context_class or sp.profile.loa,
                attributes=released_attributes(sp.profile, names, authentication),
                lifetime=ASSERTION_LIFETIME,
                signer=planned.snapshot.signer,
                encrypt_for=sp.encryption,
            )
        except EncryptionError as exc:
            raise SamlRequestRejected(SamlReason.ENCRYPTION_FAILED, str(exc)) from exc

    def build_error_response(
        self, request: AuthnRequestInfo, status: ErrorStatus, message: str
    ) -> BuiltResponse:
        """A signed Response with a non-success status (e.g. NoPassive, AuthnFailed)."""
        return build_status_response(
            Addressing(self._settings.entity_id, request.acs_url, request.request_id),
            top_status=status.top,
            status=status.second,
            message=message,
            signer=self._snapshot().signer,
        )

"""The reason codes of SAML's refusals: what integrators and the audit trail see.

One enum, so the tables that map a code to the SP's status (:data:`idp.saml.statuses.SAML_STATUS`)
and to the user's page (:data:`idp.web.messages.PAGES`) can be checked for every code.
"""

from __future__ import annotations

from enum import StrEnum


class SamlReason(StrEnum):
    # The message could not be read or is not what it claims (bindings, decoding, schema).
    MALFORMED_REQUEST = "malformed_request"
    REQUEST_TOO_LARGE = "request_too_large"
    XML_DTD_REFUSED = "xml_dtd_refused"
    DUPLICATE_PARAMETER = "duplicate_parameter"
    # Who sent it, and may they be answered.
    UNKNOWN_SP = "unknown_sp"
    BAD_SIGNATURE = "bad_signature"
    UNSIGNED_REQUEST = "unsigned_request"
    INSECURE_ACS = "insecure_acs"
    ENCRYPTION_REQUIRED = "encryption_required"
    # Addressed elsewhere, too old, seen before, or asking for an answer the IdP never gives.
    WRONG_DESTINATION = "wrong_destination"
    STALE_REQUEST = "stale_request"
    REPLAYED_REQUEST = "replayed_request"
    UNSUPPORTED_BINDING = "unsupported_binding"
    ACS_NOT_IN_METADATA = "acs_not_in_metadata"
    # A LogoutResponse to no LogoutRequest of the IdP.
    UNSOLICITED_RESPONSE = "unsolicited_response"
    # A valid request the IdP cannot meet: its SP is answered with a status.
    NO_PASSIVE = "no_passive"
    NO_AUTHN_CONTEXT = "no_authn_context"
    INVALID_NAME_ID_POLICY = "invalid_name_id_policy"
    # A finished login whose Response cannot be sent.
    DIRECTORY_ENTRY_UNUSABLE = "directory_entry_unusable"
    ENCRYPTION_FAILED = "encryption_failed"

"""From a validated certificate to the person and the HSA-IDs they may log in as."""

from __future__ import annotations

import secrets
import time

from idp.authn import Authentication
from idp.db import Transaction
from idp.directory.people import entry_and_service_ids
from idp.login.errors import LoginFailed, LoginReason
from idp.login.policy import LoginPolicy
from idp.siths.validation import ValidatedCertificate


def authentications_for_certificate(
    session: Transaction,
    certificate: ValidatedCertificate,
    *,
    method: str,
    policy: LoginPolicy,
) -> list[Authentication]:
    """One :class:`Authentication` per HSA-ID the card's holder may use (in the organisations
    the ``policy`` accepts); the card's own first.

    Raises :class:`LoginFailed` if the directory does not know the HSA-ID or it is inactive.
    """
    hsa_id = certificate.hsa_id.value
    entry, service_ids = entry_and_service_ids(session, hsa_id, policy.accepted_organisations)
    if entry is None:
        raise LoginFailed(
            LoginReason.UNKNOWN_PERSON, f"{hsa_id} is not in the directory", hsa_id=hsa_id
        )
    if not entry.active:
        raise LoginFailed(LoginReason.PERSON_DEACTIVATED, f"{hsa_id} is deactivated", hsa_id=hsa_id)
    instant = int(time.time())
    login_id = secrets.token_urlsafe(16)
    return [
        Authentication(
            hsa_id=row.hsa_id,
            given_name=row.given_name,
            surname=row.surname,
            title=row.title,
            organisation=row.organisation,
            mail=row.mail,
            method=method,
            certificate_fingerprint=certificate.fingerprint_sha256,
            authn_instant=instant,
            login_id=login_id,
        )
        for row in service_ids
    ]

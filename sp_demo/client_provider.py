"""One shared SAML client, built from the IdP's metadata when first needed and rebuilt when old.

Built lazily so that mock Treserva starts even while the IdP is down (its start page and its
own metadata do not need the IdP); rebuilt after ``idp_metadata_refresh_seconds`` so a key
rollover at the IdP is picked up without a restart. If a rebuild fails the previous client is
kept, because the IdP's metadata is valid for a day and a blip should not stop logins.
"""

from __future__ import annotations

import logging
import threading
import time

from saml2.client import Saml2Client

from sp_demo.config import Settings
from sp_demo.idp_metadata import IdpMetadataError, load_idp_metadata
from sp_demo.saml import build_client

logger = logging.getLogger("sp_demo")


class SamlClientProvider:
    """Hands out the current :class:`Saml2Client`. ``get`` blocks: call it off the event loop."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._client: Saml2Client | None = None
        self._built_at = 0.0

    def get(self) -> Saml2Client:
        """The client; raises :class:`IdpMetadataError` if there is none and none can be built."""
        with self._lock:
            age = time.monotonic() - self._built_at
            if self._client is None or age >= self._settings.idp_metadata_refresh_seconds:
                self._rebuild()
            assert self._client is not None
            return self._client

    def _rebuild(self) -> None:
        try:
            client = build_client(self._settings, load_idp_metadata(self._settings))
        except Exception as error:
            # Anything pysaml2 throws at bad metadata (e.g. expired validUntil) counts too.
            message = f"{type(error).__name__}: {error}"
            if self._client is None:
                if isinstance(error, IdpMetadataError):
                    raise
                raise IdpMetadataError(message) from error
            logger.warning("IdP metadata refresh failed, keeping the previous one: %s", message)
            # Try again after a short while rather than on every request.
            self._built_at = time.monotonic() - self._settings.idp_metadata_refresh_seconds + 60
            return
        self._client = client
        self._built_at = time.monotonic()

"""SP metadata from a remote signed aggregate, fetched over HTTPS and refreshed on a schedule.

What the IdP relies on:

- a copy is accepted only if it is signed (an unsigned one is refused: pysaml2's MetadataStore
  would pass it) and the signature verifies with the pinned federation certificate; it carries a
  ``validUntil`` in the future, no earlier than the last accepted copy's (a replayed older
  aggregate is refused);
- inside an accepted copy, entities whose ID occurs twice, entities that claim an ACS another
  entity lists, and entities with a bad entity ID, ACS or certificate are dropped (each is
  logged and audited);
- a refused or failed fetch keeps the last good copy, and says so; the copy is served to
  pysaml2 (:meth:`RemoteAggregate.metadata_files`) only until its ``validUntil``: after that,
  its SPs are no longer trusted;
- the accepted entities are written to ``<var_dir>/sp-metadata-aggregate/accepted.xml`` so a
  restart without network starts from the last good copy (still bounded by its validUntil).

All methods block (network, files): call them from a thread, as :meth:`start` does.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from idp.audit import AuditHook
from idp.config import Settings
from idp.errors import Refusal
from idp.federation.checks import (
    duplicate_entity_ids,
    effective_valid_until,
    entity_problems,
    parse_instant,
    shared_acs,
)
from idp.federation.document import (
    DEFAULT_MAX_BYTES,
    DSIG_NS,
    ENTITIES_DESCRIPTOR,
    MetadataDocumentError,
    entity_descriptors,
    parse_metadata,
    read_source,
)
from idp.federation.signing import MetadataSignatureError, verify_metadata_signature

logger = logging.getLogger("idp.federation.remote")

CACHE_DIR = "sp-metadata-aggregate"
ACCEPTED_FILE = "accepted.xml"


class AggregateRefused(Refusal):
    """A fetched aggregate is not used; ``reason`` is a short code, the message says why."""


@dataclass(frozen=True)
class AcceptedCopy:
    """The last good aggregate: the accepted entities' file and until when it may be used."""

    path: Path
    valid_until: dt.datetime
    entity_ids: tuple[str, ...]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RemoteAggregate:
    """One remote aggregate source. Thread-safe."""

    def __init__(
        self,
        url: str,
        federation_cert: Path,
        cache_dir: Path,
        *,
        refresh_seconds: float = 300.0,
        verify: ssl.SSLContext | bool = True,
        max_bytes: int = DEFAULT_MAX_BYTES,
        audit: AuditHook | None = None,
        allow_http_loopback_acs: bool = False,
    ) -> None:
        if not federation_cert.is_file():
            # Without a pinned certificate nothing could be verified: refuse to start.
            raise ValueError(f"the federation certificate {federation_cert} does not exist")
        self.url = url
        self.federation_cert = federation_cert
        self.cache_dir = cache_dir
        self.refresh_seconds = refresh_seconds
        self._verify = verify
        self._max_bytes = max_bytes
        self._audit = audit
        self._allow_http_loopback_acs = allow_http_loopback_acs
        self._lock = threading.Lock()
        self._accepted: AcceptedCopy | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str = ""
        self._load_cached()

    @classmethod
    def from_settings(
        cls, settings: Settings, audit: AuditHook | None = None
    ) -> RemoteAggregate | None:
        """The source ``IDP_SP_METADATA_AGGREGATE_URL`` configures, or None without one."""
        if not settings.sp_metadata_aggregate_url:
            return None
        ca_file = settings.sp_metadata_aggregate_ca_file
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file != Path() else True
        )
        return cls(
            settings.sp_metadata_aggregate_url,
            settings.sp_metadata_federation_cert,
            settings.var_dir / CACHE_DIR,
            refresh_seconds=settings.sp_metadata_refresh_seconds,
            verify=verify,
            audit=audit,
            allow_http_loopback_acs=settings.allow_http_loopback_acs,
        )

    # --- what pysaml2 gets ------------------------------------------------------------------

    def metadata_files(self, now: dt.datetime | None = None) -> list[str]:
        """The accepted entities' file while its validUntil has not passed; else nothing."""
        with self._lock:
            accepted = self._accepted
        if accepted is None or (now or _now()) >= accepted.valid_until:
            return []
        return [str(accepted.path)]

    @property
    def accepted(self) -> AcceptedCopy | None:
        with self._lock:
            return self._accepted

    # --- refreshing -------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Fetch, check and (if good) adopt the aggregate. True if adopted.

        On any refusal the last good copy stays in use; the reason is logged at WARNING,
        audited as ``saml.metadata_refresh`` and kept in :attr:`last_error`.
        """
        try:
            data = read_source(self.url, max_bytes=self._max_bytes, verify=self._verify)
            accepted = self._accept(data)
        except (AggregateRefused, MetadataDocumentError) as exc:
            reason = getattr(exc, "reason", "refused")
            detail = getattr(exc, "detail", str(exc))
            current = self.accepted
            keeping = (
                f"keeping the last good copy (valid until {current.valid_until:%Y-%m-%dT%H:%M:%SZ})"
                if current
                else "no good copy: SPs from this aggregate are not trusted"
            )
            self.last_error = f"{reason}: {detail}"
            logger.warning("SP metadata aggregate %s refused: %s; %s", self.url, detail, keeping)
            self._record("refused", f"{reason}: {detail}; {keeping}")
            return False
        self.last_error = ""
        logger.info(
            "SP metadata aggregate %s accepted: %d entities, valid until %s",
            self.url,
            len(accepted.entity_ids),
            accepted.valid_until,
        )
        self._record(
            "success", f"{len(accepted.entity_ids)} entities, valid until {accepted.valid_until}"
        )
        return True

    def _record(self, outcome: str, detail: str) -> None:
        if self._audit is None:
            return
        try:
            self._audit("saml.metadata_refresh", outcome, detail)
        except Exception:  # the audit trail failing must not stop metadata refresh
            logger.exception("could not audit a metadata refresh")

    def _accept(self, data: bytes) -> AcceptedCopy:
        root = parse_metadata(data, max_bytes=self._max_bytes)
        if root.tag != ENTITIES_DESCRIPTOR:
            raise AggregateRefused("not_aggregate", "the root element is not EntitiesDescriptor")
        try:
            verify_metadata_signature(data, root, self.federation_cert)
        except MetadataSignatureError as exc:
            raise AggregateRefused("bad_signature", str(exc)) from exc
        value = root.get("validUntil")
        if not value:
            raise AggregateRefused("no_valid_until", "the aggregate has no validUntil")
        try:
            valid_until = parse_instant(value)
        except ValueError as exc:
            raise AggregateRefused("no_valid_until", str(exc)) from exc
        now = _now()
        if valid_until <= now:
            raise AggregateRefused("expired", f"the aggregate expired at {value}")
        current = self.accepted
        if current is not None and valid_until < current.valid_until:
            raise AggregateRefused(
                "older_aggregate",
                f"validUntil {value} is older than the current copy's "
                f"{current.valid_until:%Y-%m-%dT%H:%M:%SZ} (a replayed aggregate?)",
            )
        entities = self._trusted_entities(root, now)
        path = self._write(entities, valid_until)
        copy = AcceptedCopy(
            path, valid_until, tuple(entity.get("entityID") or "" for entity in entities)
        )
        with self._lock:
            self._accepted = copy
        return copy

    def _trusted_entities(self, root: etree._Element, now: dt.datetime) -> list[etree._Element]:
        entities = entity_descriptors(root)
        refused: dict[str, str] = {}
        for entity_id in duplicate_entity_ids(entities):
            refused[entity_id] = "the entity ID occurs more than once in the aggregate"
        for location, claimants in shared_acs(entities).items():
            # The owner is the one claimant on the ACS's own host; with no single owner, none
            # of them gets the ACS.
            host = urllib.parse.urlsplit(location).hostname
            owners = [c for c in claimants if urllib.parse.urlsplit(c).hostname == host]
            for entity_id in claimants:
                if len(owners) == 1 and entity_id == owners[0]:
                    continue
                refused.setdefault(
                    entity_id,
                    f"claims ACS {location}, also listed by {', '.join(claimants)}",
                )
        for entity in entities:
            entity_id = entity.get("entityID") or ""
            problems = entity_problems(
                entity, now, allow_http_loopback_acs=self._allow_http_loopback_acs
            )
            try:
                until = effective_valid_until(entity)
            except ValueError as exc:
                problems.append(str(exc))
                until = None
            if until is not None and until <= now:
                problems.append(f"the entity expired at {until:%Y-%m-%dT%H:%M:%SZ}")
            if problems:
                refused.setdefault(entity_id, "; ".join(problems))
        for entity_id, why in refused.items():
            logger.warning("SP %s in aggregate %s not trusted: %s", entity_id, self.url, why)
            self._record("entity_refused", f"{entity_id}: {why}")
        return [entity for entity in entities if (entity.get("entityID") or "") not in refused]

    def _write(self, entities: list[etree._Element], valid_until: dt.datetime) -> Path:
        """The accepted entities as an unsigned EntitiesDescriptor, written atomically.

        Unsigned on purpose: it was verified on arrival and lives in the IdP's own var dir.
        """
        out = etree.Element(ENTITIES_DESCRIPTOR)
        out.set("validUntil", valid_until.strftime("%Y-%m-%dT%H:%M:%SZ"))
        for entity in entities:
            for signature in entity.findall(f"{{{DSIG_NS}}}Signature"):
                entity.remove(signature)
            out.append(entity)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path = self.cache_dir / ACCEPTED_FILE
        temporary = self.cache_dir / f".{ACCEPTED_FILE}.tmp"
        temporary.write_bytes(etree.tostring(out, xml_declaration=True, encoding="UTF-8"))
        os.replace(temporary, path)
        return path

    def _load_cached(self) -> None:
        """Adopt the copy a previous run accepted (it was verified then), if still valid."""
        path = self.cache_dir / ACCEPTED_FILE
        if not path.is_file():
            return
        try:
            root = parse_metadata(path.read_bytes(), max_bytes=self._max_bytes)
            valid_until = parse_instant(root.get("validUntil") or "")
        except (MetadataDocumentError, ValueError, OSError) as exc:
            logger.warning("ignoring the cached SP metadata aggregate %s: %s", path, exc)
            return
        if valid_until > _now():
            ids = tuple(entity.get("entityID") or "" for entity in entity_descriptors(root))
            self._accepted = AcceptedCopy(path, valid_until, ids)

    # --- schedule ---------------------------------------------------------------------------

    def start(self, *, refresh_now: bool = True) -> None:
        """Refresh every ``refresh_seconds`` in a daemon thread (at once if ``refresh_now``)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, args=(refresh_now,), name="sp-metadata-aggregate", daemon=True
        )
        self._thread.start()

    def _run(self, refresh_now: bool) -> None:
        if not refresh_now:
            self._stop.wait(self.refresh_seconds)
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # keep refreshing whatever one attempt did
                logger.exception("SP metadata aggregate refresh failed unexpectedly")
            self._stop.wait(self.refresh_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

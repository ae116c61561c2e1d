"""``init_test_pki``: generate the whole test PKI that mirrors SITHS, once.

What it creates (see :mod:`siths_testkit.pki.layout` for where):

- the SITHS test hierarchy: "SITHS e-id Root CA v2 TEST" with the two issuing CAs "SITHS e-id
  Person HSA-id 3 CA v1 TEST" and "SITHS e-id Person ID 3 CA v1 TEST", plus the bundles the IdP
  is configured with (trust anchors = the root; intermediates = the issuing CAs);
- a *forged* root and HSA-id CA whose names and key identifiers equal the real ones but whose
  keys do not, so only a signature check tells them apart;
- a TLS CA and a server certificate for the IdP's HTTPS listeners;
- the IdP's SAML signing key (and the next one, for rollover) and the mock Treserva SP's key;
- the person cards of the test directory and one bad card per defect the IdP must reject.

All people and the organisations other than Göteborgs Stad are invented.
"""

from __future__ import annotations

import datetime as dt
import fcntl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID

from siths_testkit.pki.cards import DEFAULT_P12_PASSWORD, _issue_card_unchecked
from siths_testkit.pki.issue import (
    AUTHENTICATION,
    CardProfile,
    Issuer,
    KeyPool,
    add_years,
    issuing_ca_certificate,
    key_usage,
    root_ca_certificate,
    self_signed_certificate,
    tls_server_certificate,
)
from siths_testkit.pki.layout import (
    BAD_CARDS_DIR,
    CARDS_DIR,
    MANIFEST,
    load_test_pki,
    pki_paths,
    write_manifest,
)
from siths_testkit.pki.model import CardFiles, TestPki
from siths_testkit.pki.names import (
    HSA_ID_CA_COMMON_NAME,
    IDP_NEXT_SIGNING_COMMON_NAME,
    IDP_SIGNING_COMMON_NAME,
    ORGANISATIONS,
    OWN_ORGANISATION,
    PERSON_ID_CA_COMMON_NAME,
    ROOT_CA_COMMON_NAME,
    SP_SIGNING_COMMON_NAME,
    TLS_CA_COMMON_NAME,
    ca_name,
    own_name,
)
from siths_testkit.pki.revocation import (
    DEFAULT_REVOCATION_URL,
    RevocationPointers,
    create_revocation_material,
    record_issued,
)
from siths_testkit.pki.storage import load_certificate, write_certificates, write_private_key

__all__ = ["DEFAULT_BASE_URL_HOSTS", "init_test_pki"]

DEFAULT_BASE_URL_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")

Progress = Callable[[str], None]

# Validity periods. The SITHS CAs start a year back so that the "expired" card (valid some weeks
# until yesterday) was issued while its CA was valid: then expiry is its only defect.
_CA_BACKDATE = dt.timedelta(days=365)
_ROOT_YEARS = 20
_ISSUING_CA_YEARS = 10
_TLS_CA_YEARS = 10
# Two years stays under the 825 days some TLS clients (Apple) allow even for private CAs.
_TLS_SERVER_YEARS = 2
_SIGNING_YEARS = 3
_BACKDATE = dt.timedelta(hours=1)

_WRONG_EKU = CardProfile(
    key_usage=AUTHENTICATION.key_usage, extended_key_usages=(ExtendedKeyUsageOID.SERVER_AUTH,)
)
_WRONG_KEY_USAGE = CardProfile(
    key_usage=key_usage(key_encipherment=True),
    extended_key_usages=(ExtendedKeyUsageOID.CLIENT_AUTH,),
)


@dataclass(frozen=True)
class _CardSpec:
    """One card init_test_pki creates. ``valid_from``/``valid_until`` are offsets from now."""

    name: str
    kind: str
    serial_number: str | None
    given_name: str
    surname: str
    organisation: str = OWN_ORGANISATION
    profile: CardProfile = AUTHENTICATION
    valid_from: dt.timedelta | None = None
    valid_until: dt.timedelta | None = None
    forged: bool = False
    extra_certs: tuple[str, ...] = ()

    @property
    def bad(self) -> bool:
        return self.kind != "good"


_CARDS: tuple[_CardSpec, ...] = (
    _CardSpec("anna", "good", "SE2120001355-E0001", "Anna", "Andersson"),
    _CardSpec("bertil", "good", "SE2120001355-E0002", "Bertil", "Berg"),
    # The directory marks Cecilia deactivated and does not know Doris: their cards are fine.
    _CardSpec("cecilia", "good", "SE2120001355-E0003", "Cecilia", "Carlsson"),
    _CardSpec("doris", "good", "SE2120001355-E0004", "Doris", "Dahl"),
    # Erik's card holds two HSA-ID certificates: his commission at Göteborgs Stad and one at a
    # private care provider, each with its own key, as SITHS cards do.
    _CardSpec("erik", "good", "SE2120001355-E0005", "Erik", "Ek", extra_certs=("erik_private",)),
    _CardSpec(
        "erik_private",
        "good",
        "SE5567000010-P0001",
        "Erik",
        "Ek",
        organisation=ORGANISATIONS["5567000010"],
        extra_certs=("erik",),
    ),
    _CardSpec(
        "expired",
        "expired",
        "SE2120001355-E0901",
        "Eva",
        "Utgången",
        valid_from=-dt.timedelta(days=90),
        valid_until=-dt.timedelta(days=1),
    ),
    _CardSpec(
        "not_yet_valid",
        "not_yet_valid",
        "SE2120001355-E0902",
        "Frida",
        "Framtid",
        valid_from=dt.timedelta(days=365),
    ),
    _CardSpec("wrong_eku", "wrong_eku", "SE2120001355-E0903", "Gustav", "Gren", profile=_WRONG_EKU),
    _CardSpec(
        "wrong_key_usage",
        "wrong_key_usage",
        "SE2120001355-E0904",
        "Helena",
        "Holm",
        profile=_WRONG_KEY_USAGE,
    ),
    _CardSpec("no_hsa_id", "no_hsa_id", None, "Ingrid", "Isaksson"),
    # The dash between organisation number and local part is missing.
    _CardSpec("malformed_hsa_id", "malformed_hsa_id", "SE2120001355E0905", "Johan", "Jonsson"),
    _CardSpec(
        "other_org",
        "other_org",
        "SE5590000001-X0001",
        "Olle",
        "Annan",
        organisation=ORGANISATIONS["5590000001"],
    ),
    # Anna's HSA-ID and name, from a CA that merely has the real CA's name.
    _CardSpec("forged", "forged", "SE2120001355-E0001", "Anna", "Andersson", forged=True),
)

# Root, two issuing CAs, forged root and CA, TLS CA, two IdP keys, SP key, cards. Plus the
# OCSP responder and its deliberately EKU-less twin (siths_testkit.pki.revocation). The TLS
# server key is EC, made where it is used.
_KEY_COUNT = 9 + len(_CARDS) + 2


@contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    # Several processes may start on the same directory (nodes sharing a volume, parallel
    # test runs); the lock makes all but the first wait and then find its manifest.
    with open(directory / ".init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def init_test_pki(
    directory: Path,
    *,
    base_url_hosts: Sequence[str] = DEFAULT_BASE_URL_HOSTS,
    progress: Progress | None = None,
    revocation_url: str = DEFAULT_REVOCATION_URL,
) -> TestPki:
    """Create the test PKI below ``directory`` and return it; load it if it already exists.

    Idempotent: when ``directory/manifest.json`` exists nothing is generated or changed (so
    ``base_url_hosts`` only matter the first time). The manifest is written last, so an
    interrupted run leaves no manifest and the next call starts over. ``base_url_hosts`` are
    added to the TLS server certificate's subjectAltName next to localhost, 127.0.0.1 and ::1.
    ``progress`` receives one human-readable line per step.

    ``revocation_url`` is where ``idp pki ocsp-responder`` will serve OCSP and the CRLs (also
    only the first time): every card points at ``{revocation_url}/ocsp`` and
    ``{revocation_url}/crl/hsa-id-ca.crl``, and the manifest records it (see
    :mod:`siths_testkit.pki.revocation`).
    """
    report = progress or (lambda _line: None)
    directory.mkdir(parents=True, exist_ok=True)
    with _exclusive(directory):
        if (directory / MANIFEST).is_file():
            report(f"Test PKI already exists in {directory} ({MANIFEST}); nothing regenerated")
            return load_test_pki(directory)
        return _generate(directory, tuple(base_url_hosts), report, revocation_url)


def _generate(
    directory: Path, base_url_hosts: tuple[str, ...], report: Progress, revocation_url: str
) -> TestPki:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    out = _Output(directory, pki_paths(directory), report)
    report(f"Generating {_KEY_COUNT} RSA-2048 keys")
    keys = KeyPool(_KEY_COUNT)
    ca_start = now - _CA_BACKDATE
    root, hsa_ca, person_id_ca = _siths_hierarchy(out, keys, ca_start)
    revocation = create_revocation_material(directory, hsa_ca, person_id_ca, keys.take, now)
    out.show(f"OCSP responder certificate (serves {revocation_url})", revocation.responder_cert)
    forged_hsa_ca = _forged_hierarchy(out, keys, root, hsa_ca, ca_start)
    _tls_certificates(out, keys, (*DEFAULT_BASE_URL_HOSTS, *base_url_hosts), now)
    _saml_keys(out, keys, now)
    issuers = _CardIssuers(hsa_ca, forged_hsa_ca, RevocationPointers.for_base_url(revocation_url))
    cards = {spec.name: _issue_listed_card(out, keys, issuers, spec, now) for spec in _CARDS}
    pki = TestPki(directory=directory, cards=cards, **out.paths)
    write_manifest(pki, base_url_hosts=base_url_hosts, created=now, revocation_url=revocation_url)
    report(f"Manifest: {MANIFEST}")
    return pki


@dataclass(frozen=True)
class _Output:
    """Where :func:`_generate` writes (``paths``: :func:`pki_paths`), and how it tells."""

    directory: Path
    paths: dict[str, Path]
    report: Progress

    def show(self, what: str, path: Path) -> None:
        self.report(f"{what}: {path.relative_to(self.directory)}")

    def save(
        self, field: str, cert: x509.Certificate, key: RSAPrivateKey | ec.EllipticCurvePrivateKey
    ) -> None:
        write_certificates(self.paths[f"{field}_cert"], [cert])
        write_private_key(self.paths[f"{field}_key"], key)


def _siths_hierarchy(
    out: _Output, keys: KeyPool, ca_start: dt.datetime
) -> tuple[Issuer, Issuer, Issuer]:
    """The SITHS test root and its two issuing CAs (HSA-id, Person ID), and the two bundles the
    IdP is configured with; returns (root, HSA-id CA, Person ID CA)."""
    root_key = keys.take()
    root = Issuer(
        root_ca_certificate(
            root_key,
            ca_name(ROOT_CA_COMMON_NAME),
            not_before=ca_start,
            not_after=add_years(ca_start, _ROOT_YEARS),
        ),
        root_key,
    )
    out.save("root_ca", root.certificate, root.key)
    out.show("SITHS root CA", out.paths["root_ca_cert"])
    issuing: dict[str, Issuer] = {}
    for field, common_name in (
        ("hsa_ca", HSA_ID_CA_COMMON_NAME),
        ("person_id_ca", PERSON_ID_CA_COMMON_NAME),
    ):
        key = keys.take()
        certificate = issuing_ca_certificate(
            key,
            ca_name(common_name),
            root,
            not_before=ca_start,
            not_after=add_years(ca_start, _ISSUING_CA_YEARS),
        )
        issuing[field] = Issuer(certificate, key)
        out.save(field, certificate, key)
        out.show(common_name, out.paths[f"{field}_cert"])
    hsa_ca, person_id_ca = issuing["hsa_ca"], issuing["person_id_ca"]
    write_certificates(out.paths["trust_anchors_file"], [root.certificate])
    out.show("Trust anchors (root only)", out.paths["trust_anchors_file"])
    write_certificates(
        out.paths["intermediates_file"], [hsa_ca.certificate, person_id_ca.certificate]
    )
    out.show("Intermediates (the issuing CAs)", out.paths["intermediates_file"])
    return root, hsa_ca, person_id_ca


def _forged_hierarchy(
    out: _Output, keys: KeyPool, root: Issuer, hsa_ca: Issuer, ca_start: dt.datetime
) -> Issuer:
    """The forgery: a root and HSA-id CA with the real ones' names and key identifiers but
    other keys; returns the forged HSA-id CA."""
    forged_root_key = keys.take()
    forged_root = Issuer(
        root_ca_certificate(
            forged_root_key,
            root.certificate.subject,
            not_before=ca_start,
            not_after=add_years(ca_start, _ROOT_YEARS),
            subject_key_identifier=_ski_of(root.certificate),
        ),
        forged_root_key,
    )
    out.save("forged_root_ca", forged_root.certificate, forged_root.key)
    forged_hsa_key = keys.take()
    forged_hsa_ca = Issuer(
        issuing_ca_certificate(
            forged_hsa_key,
            hsa_ca.certificate.subject,
            forged_root,
            not_before=ca_start,
            not_after=add_years(ca_start, _ISSUING_CA_YEARS),
            subject_key_identifier=_ski_of(hsa_ca.certificate),
        ),
        forged_hsa_key,
    )
    out.save("forged_hsa_ca", forged_hsa_ca.certificate, forged_hsa_ca.key)
    out.show("Forged root and HSA-id CA (same names, other keys)", out.paths["forged_hsa_ca_cert"])
    return forged_hsa_ca


def _tls_certificates(
    out: _Output, keys: KeyPool, hosts: tuple[str, ...], now: dt.datetime
) -> None:
    """TLS for the IdP's own HTTPS listeners: a CA and a server certificate for ``hosts``."""
    tls_key = keys.take()
    tls_ca = Issuer(
        root_ca_certificate(
            tls_key,
            own_name(TLS_CA_COMMON_NAME),
            not_before=now - dt.timedelta(days=1),
            not_after=add_years(now, _TLS_CA_YEARS),
        ),
        tls_key,
    )
    out.save("tls_ca", tls_ca.certificate, tls_ca.key)
    out.show(TLS_CA_COMMON_NAME, out.paths["tls_ca_cert"])
    # EC P-256, as most public TLS certificates are now: the server's handshake signature is
    # a small fraction of an RSA-2048 one (every login makes two handshakes). The SAML
    # signing keys and the cards stay RSA-2048.
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = tls_server_certificate(
        server_key,
        hosts,
        tls_ca,
        organisation=OWN_ORGANISATION,
        not_before=now - _BACKDATE,
        not_after=add_years(now, _TLS_SERVER_YEARS),
    )
    out.save("tls_server", server, server_key)
    names = ", ".join(dict.fromkeys(hosts))
    out.show(f"TLS server certificate ({names})", out.paths["tls_server_cert"])


def _saml_keys(out: _Output, keys: KeyPool, now: dt.datetime) -> None:
    """The SAML keys: self-signed, trusted through metadata rather than a chain."""
    signing_usage = key_usage(digital_signature=True)
    for field, common_name, usage, label in (
        ("idp_signing", IDP_SIGNING_COMMON_NAME, signing_usage, "IdP SAML signing key"),
        ("idp_next_signing", IDP_NEXT_SIGNING_COMMON_NAME, signing_usage, "IdP next signing key"),
        # The SP both signs requests and receives encrypted assertions with this key.
        (
            "sp_signing",
            SP_SIGNING_COMMON_NAME,
            key_usage(digital_signature=True, key_encipherment=True),
            "Mock Treserva SP key",
        ),
    ):
        key = keys.take()
        certificate = self_signed_certificate(
            key,
            own_name(common_name),
            usage=usage,
            not_before=now - _BACKDATE,
            not_after=add_years(now, _SIGNING_YEARS),
        )
        out.save(field, certificate, key)
        out.show(label, out.paths[f"{field}_cert"])


@dataclass(frozen=True)
class _CardIssuers:
    """Who signs the listed cards: the HSA-id CA, or the forged one for a forged card."""

    hsa_ca: Issuer
    forged_hsa_ca: Issuer
    pointers: RevocationPointers


def _issue_listed_card(
    out: _Output, keys: KeyPool, issuers: _CardIssuers, spec: _CardSpec, now: dt.datetime
) -> CardFiles:
    """One card of :data:`_CARDS`, recorded as issued unless it is forged."""
    card = _issue_card_unchecked(
        issuers.forged_hsa_ca if spec.forged else issuers.hsa_ca,
        name=spec.name,
        kind=spec.kind,
        serial_number=spec.serial_number,
        given_name=spec.given_name,
        surname=spec.surname,
        organisation=spec.organisation,
        out_dir=out.directory / (BAD_CARDS_DIR if spec.bad else CARDS_DIR),
        file_stem=spec.name if spec.bad else str(spec.serial_number),
        not_before=now + spec.valid_from if spec.valid_from is not None else None,
        not_after=now + spec.valid_until if spec.valid_until is not None else None,
        profile=spec.profile,
        p12_password=DEFAULT_P12_PASSWORD,
        extra_certs=spec.extra_certs,
        now=now,
        key=keys.take(),
        pointers=issuers.pointers,
    )
    if not spec.forged:
        record_issued(out.directory, [(load_certificate(card.cert), card.cert)])
    out.show(f"Card {spec.name} ({spec.kind}, {spec.serial_number or 'no HSA-ID'})", card.cert)
    return card


def _ski_of(certificate: x509.Certificate) -> x509.SubjectKeyIdentifier:
    return certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value

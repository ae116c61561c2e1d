"""Building certificates: CA, card, TLS server and self-signed signing profiles.

Pure functions from keys, names and times to signed ``x509.Certificate`` objects; nothing here
touches the disk. The profiles are what ``cryptography.x509.verification``'s Web PKI defaults
demand, which is what the IdP validates cards with, plus the IdP's own card rules:

- every CA: basicConstraints CA=true **critical** and keyUsage with keyCertSign;
- every end entity: authorityKeyIdentifier, and a subjectAltName (non-critical, since the
  subject is not empty);
- a card: keyUsage digitalSignature, extendedKeyUsage with clientAuth, not a CA, and an RSA-2048
  or P-256/384/521 key (the SITHS person profile, see :mod:`idp.siths.validation`).

SKI on CAs and AKI on issuing CAs are not demanded by the verifier but are added anyway: SITHS
has them, and OpenSSL's strict mode (Python 3.13's default for TLS) does demand them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from siths_testkit.pki.names import MS_SMARTCARD_LOGIN

__all__ = [
    "AUTHENTICATION",
    "KEY_BITS",
    "CardKey",
    "CardProfile",
    "Issuer",
    "KeyPool",
    "SubjectKey",
    "add_years",
    "card_certificate",
    "generate_key",
    "issuing_ca_certificate",
    "key_usage",
    "new_serial",
    "root_ca_certificate",
    "self_signed_certificate",
    "tls_server_certificate",
]

# RSA-2048 is what SITHS cards use, the smallest size the IdP accepts for a card and the
# smallest the Web PKI verifier accepts for a CA.
KEY_BITS = 2048

# A card's key pair made in this process (the test PKI makes RSA-2048; tests make others,
# including keys the IdP must refuse).
CardKey = RSAPrivateKey | ec.EllipticCurvePrivateKey

# The key a certificate is issued for. A key pair generated here is passed whole; a key that
# lives on a token (PKCS#11), where the private half can never be read, is passed as its
# public half.
SubjectKey = CardKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def generate_key() -> RSAPrivateKey:
    """A fresh RSA-2048 key with public exponent 65537."""
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


class KeyPool:
    """Hands out fresh RSA keys, generating an expected number of them in parallel up front.

    Key generation dominates the cost of building the PKI and OpenSSL releases the GIL while it
    searches for primes, so a few threads roughly divide the time by the number of cores.
    Asking for more keys than were prepared still works: the extra ones are made on demand.
    """

    def __init__(self, expected: int, *, workers: int = 4) -> None:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            self._keys = list(pool.map(lambda _: generate_key(), range(expected)))

    def take(self) -> RSAPrivateKey:
        """Return a key nobody else has been given."""
        return self._keys.pop() if self._keys else generate_key()


@dataclass(frozen=True)
class Issuer:
    """A CA that can sign: its certificate (for the issuer name and AKI) and its private key."""

    certificate: x509.Certificate
    key: RSAPrivateKey


@dataclass(frozen=True)
class CardProfile:
    """Key usage, extended key usages and CA flag of a card certificate.

    A good card has both extensions and ``ca`` false (:data:`AUTHENTICATION`). ``None`` leaves
    the extension out and ``ca=True`` asserts basicConstraints cA: only the test PKI's bad
    cards, which the IdP must refuse, are made so.
    """

    key_usage: x509.KeyUsage | None
    extended_key_usages: tuple[x509.ObjectIdentifier, ...] | None
    ca: bool = False


def key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    """A ``KeyUsage`` with the named bits set and every other bit clear."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


# The SITHS authentication certificate: signs TLS handshakes and app challenges, nothing else.
AUTHENTICATION = CardProfile(
    key_usage=key_usage(digital_signature=True),
    extended_key_usages=(ExtendedKeyUsageOID.CLIENT_AUTH, MS_SMARTCARD_LOGIN),
)


def new_serial() -> int:
    """A random positive serial of at most 16 bytes (127 bits), never zero."""
    return secrets.randbits(127) or 1


def add_years(moment: dt.datetime, years: int) -> dt.datetime:
    """``moment`` plus whole calendar years; 29 February becomes 28 February when needed."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)


def _public(key: SubjectKey) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    if isinstance(key, RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return key.public_key()
    return key


def _ski(key: SubjectKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(_public(key))


def _aki(issuer: Issuer) -> x509.AuthorityKeyIdentifier:
    # Taken from the issuer's SKI extension (not recomputed from its key) so the AKI always
    # names the identifier the issuer actually publishes, even if that was set by hand.
    ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def _builder(
    subject: x509.Name,
    issuer_name: x509.Name,
    key: SubjectKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    if not_after <= not_before:
        raise ValueError(f"not_after ({not_after}) must be later than not_before ({not_before})")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(_public(key))
        .serial_number(new_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _ca_extensions(
    builder: x509.CertificateBuilder,
    path_length: int | None,
    ski: x509.SubjectKeyIdentifier,
) -> x509.CertificateBuilder:
    return (
        builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ski, critical=False)
    )


def root_ca_certificate(
    key: RSAPrivateKey,
    name: x509.Name,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    subject_key_identifier: x509.SubjectKeyIdentifier | None = None,
) -> x509.Certificate:
    """A self-signed root: CA (no path length limit), keyCertSign+cRLSign, SKI.

    ``subject_key_identifier`` overrides the SKI computed from ``key``; only the forged
    hierarchy uses it, to copy the real root's identifier.
    """
    builder = _builder(name, name, key, not_before, not_after)
    builder = _ca_extensions(builder, None, subject_key_identifier or _ski(key))
    return builder.sign(key, hashes.SHA256())


def issuing_ca_certificate(
    key: RSAPrivateKey,
    name: x509.Name,
    issuer: Issuer,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    subject_key_identifier: x509.SubjectKeyIdentifier | None = None,
) -> x509.Certificate:
    """An issuing CA under ``issuer``: CA with path length 0, keyCertSign+cRLSign, SKI, AKI."""
    builder = _builder(name, issuer.certificate.subject, key, not_before, not_after)
    builder = _ca_extensions(builder, 0, subject_key_identifier or _ski(key))
    builder = builder.add_extension(_aki(issuer), critical=False)
    return builder.sign(issuer.key, hashes.SHA256())


def card_certificate(
    key: SubjectKey,
    subject: x509.Name,
    issuer: Issuer,
    *,
    email: str,
    profile: CardProfile,
    not_before: dt.datetime,
    not_after: dt.datetime,
    extensions: Iterable[x509.ExtensionType] = (),
) -> x509.Certificate:
    """A card's end-entity certificate for ``key`` with the key usages of ``profile``.

    ``key`` may be a public key only (a card whose private key lives on a token).

    Carries basicConstraints (CA=false unless the profile says otherwise), the profile's
    keyUsage (critical) and EKU (each when the profile has one), a subjectAltName with the
    rfc822Name ``email`` (non-critical: the subject is not empty), SKI and AKI, then
    ``extensions`` as non-critical extensions (the revocation pointers, see
    :func:`siths_testkit.pki.revocation.revocation_extensions`).
    """
    builder = _builder(subject, issuer.certificate.subject, key, not_before, not_after)
    builder = builder.add_extension(
        x509.BasicConstraints(ca=profile.ca, path_length=None), critical=True
    )
    if profile.key_usage is not None:
        builder = builder.add_extension(profile.key_usage, critical=True)
    if profile.extended_key_usages is not None:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(profile.extended_key_usages)), critical=False
        )
    builder = (
        builder.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .add_extension(_ski(key), critical=False)
        .add_extension(_aki(issuer), critical=False)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(issuer.key, hashes.SHA256())


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def tls_server_certificate(
    key: CardKey,
    hosts: Iterable[str],
    issuer: Issuer,
    *,
    organisation: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """A TLS server certificate for ``hosts`` (IP literals become iPAddress SANs, the rest DNS).

    The first host is the subject CN; duplicates are dropped, order is kept. EKU is serverAuth
    only, so the certificate cannot double as a client certificate. keyUsage is what the key
    can do in TLS: digitalSignature, and keyEncipherment for an RSA key only.
    """
    unique_hosts = list(dict.fromkeys(hosts))
    if not unique_hosts:
        raise ValueError("a TLS server certificate needs at least one host name")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, unique_hosts[0]),
        ]
    )
    builder = _builder(subject, issuer.certificate.subject, key, not_before, not_after)
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            key_usage(digital_signature=True, key_encipherment=isinstance(key, RSAPrivateKey)),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(host) for host in unique_hosts]),
            critical=False,
        )
        .add_extension(_ski(key), critical=False)
        .add_extension(_aki(issuer), critical=False)
    )
    return builder.sign(issuer.key, hashes.SHA256())


def self_signed_certificate(
    key: RSAPrivateKey,
    name: x509.Name,
    *,
    usage: x509.KeyUsage,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """A self-signed end-entity certificate, as SAML metadata carries for signing/encryption keys.

    SAML trusts the key because it is in signed metadata, not because of a chain, so there is no
    CA; basicConstraints CA=false keeps it from being mistaken for one.
    """
    builder = _builder(name, name, key, not_before, not_after)
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(_ski(key), critical=False)
    )
    return builder.sign(key, hashes.SHA256())

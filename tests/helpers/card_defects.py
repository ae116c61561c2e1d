"""Cards the IdP must refuse for their key or their certificate profile, issued on demand.

Each :class:`Defect` is a card of the test PKI's own HSA-id CA for a registered person (Anna,
by default), good in every way but one: its key (issue 14, finding 2) or its keyUsage,
extendedKeyUsage or basicConstraints (finding 3). Were the defect not caught, the card would
log Anna in, so a test that expects the refusal cannot pass by accident. The same catalogue
drives the validator's unit tests and the tests over real sockets on every channel.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import crypto

from siths_testkit.pki import CardFiles, TestPki, issue_card
from siths_testkit.pki.issue import AUTHENTICATION, CardKey, CardProfile, key_usage

ANNA = "SE2120001355-E0001"


def rsa_key(bits: int, exponent: int = 65537) -> rsa.RSAPrivateKey:
    """A fresh RSA key of ``bits`` bits, also below the 1024 that cryptography will generate."""
    if bits >= 1024:
        return rsa.generate_private_key(public_exponent=exponent, key_size=bits)
    if exponent != 65537:
        raise ValueError("keys under 1024 bits are made with exponent 65537 only")
    # cryptography refuses to generate such a key; pyOpenSSL's deprecated generator still
    # does, which is all a test of refusing one needs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pkey = crypto.PKey()
        pkey.generate_key(crypto.TYPE_RSA, bits)
    key = pkey.to_cryptography_key()
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@functools.cache
def good_rsa_key() -> rsa.RSAPrivateKey:
    """One RSA-2048 key for all the profile defects (their key is not what is wrong)."""
    return rsa_key(2048)


@dataclass(frozen=True)
class Defect:
    """A card with one defect: ``reason`` is the code the IdP must refuse it with."""

    name: str
    reason: str
    make_key: Callable[[], CardKey]
    profile: CardProfile = AUTHENTICATION

    def issue(self, pki: TestPki, out_dir: Path, hsa_id: str = ANNA) -> CardFiles:
        """Issue the card into ``out_dir/<name>`` (recorded as issued: OCSP says good)."""
        return issue_card(
            pki,
            hsa_id=hsa_id,
            given_name="Anna",
            surname="Andersson",
            out_dir=out_dir / self.name,
            key=self.make_key(),
            profile=self.profile,
        )


WEAK_KEYS = (
    Defect("rsa_1024", "weak_key", lambda: rsa_key(1024)),
    Defect("rsa_768", "weak_key", lambda: rsa_key(768)),
    Defect("rsa_1024_e3", "weak_key", lambda: rsa_key(1024, exponent=3)),
    Defect("ec_p192", "weak_key", lambda: ec.generate_private_key(ec.SECP192R1())),
)
# Beyond the findings: the edges of the rule, for the validator's unit tests.
MORE_WEAK_KEYS = (
    Defect("rsa_2047", "weak_key", lambda: rsa_key(2047)),
    Defect("rsa_2048_e3", "weak_key", lambda: rsa_key(2048, exponent=3)),
    Defect("ec_p224", "weak_key", lambda: ec.generate_private_key(ec.SECP224R1())),
    Defect("ec_secp256k1", "weak_key", lambda: ec.generate_private_key(ec.SECP256K1())),
)

_EKU = AUTHENTICATION.extended_key_usages
PROFILE_DEFECTS = (
    Defect(
        "no_eku",
        "wrong_extended_key_usage",
        good_rsa_key,
        CardProfile(AUTHENTICATION.key_usage, extended_key_usages=None),
    ),
    Defect("no_key_usage", "wrong_key_usage", good_rsa_key, CardProfile(None, _EKU)),
    Defect(
        "ca_true",
        "wrong_key_usage",
        good_rsa_key,
        CardProfile(AUTHENTICATION.key_usage, _EKU, ca=True),
    ),
    Defect(
        "key_cert_sign",
        "wrong_key_usage",
        good_rsa_key,
        CardProfile(key_usage(digital_signature=True, key_cert_sign=True), _EKU),
    ),
)
MORE_PROFILE_DEFECTS = (
    Defect(
        "eku_without_client_auth",
        "wrong_extended_key_usage",
        good_rsa_key,
        CardProfile(
            AUTHENTICATION.key_usage,
            (ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.SMARTCARD_LOGON),
        ),
    ),
    Defect(
        "any_eku_only",
        "wrong_extended_key_usage",
        good_rsa_key,
        CardProfile(AUTHENTICATION.key_usage, (ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,)),
    ),
)

# What the findings name, for the tests over real sockets (one per channel).
FINDINGS = (*WEAK_KEYS, *PROFILE_DEFECTS)

# Keys and profiles SITHS issues, which must keep working.
ACCEPTED = (
    Defect("rsa_2048", "", good_rsa_key),
    Defect("ec_p256", "", lambda: ec.generate_private_key(ec.SECP256R1())),
    Defect("ec_p384", "", lambda: ec.generate_private_key(ec.SECP384R1())),
    Defect("ec_p521", "", lambda: ec.generate_private_key(ec.SECP521R1())),
    Defect(
        "eku_client_auth_email_smartcard",
        "",
        good_rsa_key,
        CardProfile(
            key_usage(digital_signature=True, key_encipherment=True),
            (
                ExtendedKeyUsageOID.CLIENT_AUTH,
                ExtendedKeyUsageOID.EMAIL_PROTECTION,
                ExtendedKeyUsageOID.SMARTCARD_LOGON,
            ),
        ),
    ),
)

"""What the test PKI consists of: :class:`TestPki` and the :class:`CardFiles` of each card.

Plain dataclasses of paths and names; the manifest (``manifest.json``) is their serialised
form, see :mod:`siths_testkit.pki.layout`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["CARD_KINDS", "CardFiles", "IssuedCard", "TestPki"]

# "good" cards pass every check; each other kind has exactly one defect, named by the kind.
CARD_KINDS: Final = (
    "good",
    "expired",
    "not_yet_valid",
    "wrong_eku",
    "wrong_key_usage",
    "no_hsa_id",
    "malformed_hsa_id",
    "other_org",
    "forged",
)


@dataclass
class CardFiles:
    """One certificate on a (virtual) SITHS card and the files holding it.

    ``hsa_id`` is what the certificate's subject ``serialNumber`` says: ``None`` when there is
    none (kind ``no_hsa_id``) and not a valid HSA-ID for kind ``malformed_hsa_id``. ``cert`` is
    PEM (the certificate only), ``key`` unencrypted PKCS#8 PEM with mode 0600, ``p12`` a
    password-protected PKCS#12 with key, certificate and issuing CA. ``extra_certs`` names the
    other cards that sit on the same physical card (a person with commissions at two
    organisations has one certificate, and key, for each).
    """

    name: str
    hsa_id: str | None
    given_name: str
    surname: str
    cert: Path
    key: Path
    p12: Path
    kind: str
    extra_certs: list[str] = field(default_factory=list)


# issue_card returns the same shape as the cards init_test_pki creates.
IssuedCard = CardFiles


@dataclass
class TestPki:
    """Paths of everything in a generated test PKI below ``directory``.

    The fields up to ``cards`` are the stable interface; the ``*_key`` fields of the CAs and
    the ``forged_*`` fields are there for tooling and tests that issue or inspect more.
    Paths are ``directory / <fixed relative path>`` (see :mod:`siths_testkit.pki.layout`).
    """

    # Not a pytest test class, although the name starts with "Test".
    __test__ = False

    directory: Path
    root_ca_cert: Path
    hsa_ca_cert: Path
    person_id_ca_cert: Path
    trust_anchors_file: Path
    intermediates_file: Path
    tls_ca_cert: Path
    tls_server_cert: Path
    tls_server_key: Path
    idp_signing_cert: Path
    idp_signing_key: Path
    idp_next_signing_cert: Path
    idp_next_signing_key: Path
    sp_signing_cert: Path
    sp_signing_key: Path
    cards: dict[str, CardFiles]
    root_ca_key: Path
    hsa_ca_key: Path
    person_id_ca_key: Path
    tls_ca_key: Path
    forged_root_ca_cert: Path
    forged_root_ca_key: Path
    forged_hsa_ca_cert: Path
    forged_hsa_ca_key: Path

"""The test PKI that mirrors SITHS: never real keys, invented people.

Public interface (other code depends on exactly these names):

- :func:`init_test_pki` creates (or loads, if it exists) the whole hierarchy in a directory;
- :func:`load_test_pki` loads one from its ``manifest.json``;
- :func:`issue_card` issues one more HSA-ID authentication certificate;
- :func:`issue_card_for_public_key` issues one for a key pair made elsewhere (a token);
- :class:`TestPki`, :class:`CardFiles` / :class:`IssuedCard` describe the files.
"""

from siths_testkit.pki.cards import issue_card, issue_card_for_public_key
from siths_testkit.pki.init import init_test_pki
from siths_testkit.pki.layout import load_test_pki
from siths_testkit.pki.model import CardFiles, IssuedCard, TestPki

__all__ = [
    "CardFiles",
    "IssuedCard",
    "TestPki",
    "init_test_pki",
    "issue_card",
    "issue_card_for_public_key",
    "load_test_pki",
]

"""The integrators' guide: served by the IdP, kept in the repository, both from the tables the
IdP acts on (issue 15, "For integrators")."""

from __future__ import annotations

import html

import httpx

from idp import attributes
from idp.saml import encryption, loa, statuses
from idp.saml.integration_guide import integration_markdown
from tests.conftest import IdpUnderTest
from tests.helpers.support import REPO_ROOT, tls_context


def test_repository_copy_is_current() -> None:
    committed = (REPO_ROOT / "docs" / "INTEGRATION.md").read_text(encoding="utf-8")
    assert committed == integration_markdown(), (
        "run: idp metadata integration-guide > docs/INTEGRATION.md"
    )


def test_idp_serves_the_guide_with_what_it_does(idp: IdpUnderTest) -> None:
    page = httpx.get(f"{idp.base_url}/saml/integration", verify=tls_context(idp.ca_file))
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert idp.base_url + "/saml/metadata" in text
    for profile in attributes.PROFILES:
        for attribute in profile.attributes:
            assert attribute.name in text
            # Shibboleth's attribute-map entry for every released name.
            assert f'<Attribute name="{attribute.name}"' in text
    for value in loa.ASSURANCE_CERTIFICATIONS:
        assert value in text
    for status in (statuses.NO_AUTHN_CONTEXT, statuses.INVALID_NAME_ID_POLICY, statuses.CANCELLED):
        assert status.second in text
    # Encryption: what the IdP uses, and what it never does.
    for algorithm in (*encryption.CONTENT_ALGORITHMS, *encryption.KEY_TRANSPORTS):
        assert f"<code>{algorithm}</code>" in text
    for refused in encryption.REFUSED_ALGORITHMS.values():
        assert refused in text

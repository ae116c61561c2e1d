"""The ``chromium`` fixture (a pytest plugin, loaded by tests/conftest.py): one headless Chromium
per test module, trusting the session's test CA, for the tests that drive a real browser."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.browser.harness import launch_chromium
from tests.conftest import IdpUnderTest


@pytest.fixture(scope="module")
def chromium(idp: IdpUnderTest) -> Iterator[Browser]:
    with pytest.MonkeyPatch.context() as patch:
        # Read by the Playwright driver (Node.js) when it starts: the CA its client-certificate
        # proxy verifies the servers against, besides the usual ones.
        patch.setenv("NODE_EXTRA_CA_CERTS", str(idp.pki.tls_ca_cert))
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright, idp.pki.tls_server_cert)
            try:
                yield browser
            finally:
                browser.close()

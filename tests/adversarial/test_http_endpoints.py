"""A fuzzing pass over every HTTP endpoint: the IdP's main listener, its card listener, and
mock Treserva, each a real server process answering over real TLS sockets.

The route lists come from the apps themselves (``app.routes`` of an app built from the same
code and PKI), so a new endpoint is fuzzed without anyone remembering to add it. Each example
sends one generated malformed request to *every* endpoint; see :mod:`tests.adversarial.http_fuzz`
for what the requests are made of and what no answer may be. After each example the server's
log must still hold no traceback.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from idp.app import create_app
from idp.config import Settings
from sp_demo.app import create_app as create_sp_demo_app
from sp_demo.config import Settings as SpDemoSettings
from tests.adversarial.figures import examples
from tests.adversarial.http_fuzz import (
    Endpoint,
    assert_no_traceback,
    check_answer,
    endpoints_of,
    requests_for,
    send,
)
from tests.conftest import IdpUnderTest
from tests.helpers.support import RunningServer, tls_context
from tests.helpers.treserva import Treserva

# Past the cut-over: Treserva's Windows login is closed, only SITHS logins remain.
# Each example sends a request to every endpoint: shrinking one would resend them all many
# times over. A failure names the exact request that caused it instead.
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
# A request that takes longer than this is a hang (the IdP's own limits are shorter).
REQUEST_TIMEOUT = httpx.Timeout(20.0)


@pytest.fixture(scope="module")
def idp_endpoints(idp: IdpUnderTest, tmp_path_factory: pytest.TempPathFactory) -> list[Endpoint]:
    work = tmp_path_factory.mktemp("routes")
    app = create_app(
        Settings(
            var_dir=work / "var",
            pki_dir=idp.pki.directory,
            sp_metadata_dir=idp.sp_metadata_dir,
            base_url=idp.base_url,
        )
    )
    found = endpoints_of(app.routes)
    app.state.services.database.engine.dispose()
    return found


@pytest.fixture(scope="module")
def treserva_endpoints(treserva: Treserva) -> list[Endpoint]:
    pki = treserva.idp.pki
    app = create_sp_demo_app(
        SpDemoSettings(
            base_url=treserva.base_url,
            var_dir=treserva.work / "routes",
            sp_key=pki.sp_signing_key,
            sp_cert=pki.sp_signing_cert,
            session_secret="routes-only-" + "r" * 32,
        )
    )
    return endpoints_of(app.routes)


def test_the_route_lists_cover_the_protocol_endpoints(
    idp_endpoints: list[Endpoint], treserva_endpoints: list[Endpoint]
) -> None:
    idp_paths = {endpoint.path for endpoint in idp_endpoints}
    for path in (
        "/saml/sso/redirect",
        "/saml/sso/post",
        "/saml/slo/redirect",
        "/saml/slo/post",
        "/oidc/authorize",
        "/oidc/token",
        "/oidc/userinfo",
        "/app-api/v1/sign",
        "/cert-login",
        "/login/choose",
    ):
        assert any(found.endswith(path) for found in idp_paths), (path, sorted(idp_paths))
    treserva_paths = {endpoint.path for endpoint in treserva_endpoints}
    for path in ("/saml/acs", "/saml/slo/redirect", "/saml/slo/post", "/callback"):
        assert any(found.endswith(path) for found in treserva_paths), (path, treserva_paths)


def fuzz_every_endpoint(
    data: st.DataObject,
    server: RunningServer,
    base_url: str,
    endpoints: list[Endpoint],
    ca_file: Path,
    area: str,
) -> httpx.Client:
    """One malformed request to each endpoint, on a fresh cookie jar; the client is returned
    open for a last look (the caller closes it)."""
    log_offset = len(server.log())
    client = httpx.Client(
        verify=tls_context(ca_file), follow_redirects=False, timeout=REQUEST_TIMEOUT
    )
    try:
        for endpoint in endpoints:
            request = data.draw(requests_for(endpoint), label=endpoint.path)
            check_answer(send(client, base_url, request, area), request, area)
            assert_no_traceback(server.log()[log_offset:], area)
    except BaseException:
        client.close()
        raise
    return client


@settings(max_examples=examples(6), phases=NO_SHRINK)
@given(data=st.data())
def test_main_listener_survives_malformed_requests(
    idp: IdpUnderTest, idp_endpoints: list[Endpoint], data: st.DataObject
) -> None:
    fuzz_every_endpoint(
        data, idp.server, idp.base_url, idp_endpoints, idp.ca_file, "http idp"
    ).close()


@settings(max_examples=examples(3), phases=NO_SHRINK)
@given(data=st.data())
def test_card_listener_survives_malformed_requests(
    idp: IdpUnderTest, idp_endpoints: list[Endpoint], data: st.DataObject
) -> None:
    fuzz_every_endpoint(
        data, idp.server, idp.cert_login_url, idp_endpoints, idp.ca_file, "http card listener"
    ).close()


@settings(max_examples=examples(6), phases=NO_SHRINK)
@given(data=st.data())
def test_treserva_survives_malformed_requests_and_logs_nobody_in(
    treserva: Treserva, treserva_endpoints: list[Endpoint], data: st.DataObject
) -> None:
    client = fuzz_every_endpoint(
        data,
        treserva.server,
        treserva.base_url,
        treserva_endpoints,
        treserva.idp.ca_file,
        "http treserva",
    )
    try:
        me = client.get(f"{treserva.base_url}/me")
    finally:
        client.close()
    assert me.status_code == 303, f"someone is logged in at Treserva: {me.text[:500]}"

"""Schemathesis against the OpenAPI schema the IdP publishes (``/openapi.json``), over real
sockets to the session's IdP.

The schema describes the SITHS eID app API (JSON bodies with declared fields) and the other
routes as far as FastAPI knows them. Schemathesis turns each operation into a Hypothesis
strategy of requests, valid ones (positive) and ones that break the schema (negative); each
example sends one of each kind to every operation. (Schemathesis' own pytest integration,
``from_fixture``, does not run under pytest 9, so its strategies are driven here.) Mock Treserva
publishes no schema; its routes are fuzzed by test_http_endpoints.py. The checks are the
suite's: no server error, nothing issued, no traceback in the server's log.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.schemas import APIOperation

from tests.adversarial.figures import FIGURES, examples
from tests.adversarial.http_fuzz import SUCCESS, assert_no_traceback, saml_statuses
from tests.conftest import IdpUnderTest
from tests.helpers.support import tls_context

AREA = "openapi schema"


@pytest.fixture(scope="module")
def operations(idp: IdpUnderTest) -> list[APIOperation]:
    document = httpx.get(f"{idp.base_url}/openapi.json", verify=tls_context(idp.ca_file)).json()
    found = [
        result.ok() for result in schemathesis.openapi.from_dict(document).get_all_operations()
    ]
    assert any(operation.path == "/app-api/v1/sign" for operation in found), found
    return found


@settings(max_examples=examples(5), phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(data=st.data())
def test_every_operation_of_the_published_schema(
    idp: IdpUnderTest, operations: list[APIOperation], data: st.DataObject
) -> None:
    offset = len(idp.server.log())
    for operation in operations:
        # Only an operation that declares a body or parameters has a schema to break.
        declared = len(operation.body) > 0 or any(True for _ in operation.iter_parameters())
        for mode in GenerationMode if declared else (GenerationMode.POSITIVE,):
            case = data.draw(operation.as_strategy(mode), label=f"{mode.value} {operation.path}")
            FIGURES.tried(AREA)
            response = case.call(base_url=idp.base_url, verify=str(idp.ca_file), timeout=20)
            what = f"{case.method} {case.path} ({mode.value}): {str(case.body)[:300]}"
            if response.status_code >= 500:
                FIGURES.server_error(AREA, f"{response.status_code}: {what}")
            assert response.status_code < 500, what
            assert SUCCESS not in saml_statuses(response.text), what
            for name in ("access_token", "id_token"):
                assert f'"{name}"' not in response.text, what
            assert "code=" not in response.headers.get("location", ""), what
    assert_no_traceback(idp.server.log()[offset:], AREA)

"""The package structure the README promises, checked from the source (tools/import_graph.py).

Every import counts, wherever it stands in a file: no import cycle between the units (idp's
subpackages and top-level modules, sp_demo, portal, siths_testkit) or between modules, no import
inside a function (that is how cycles hide), idp never imports the applications around it nor
the test kit, and the README's diagram is the one the imports draw.
"""

from __future__ import annotations

import ast

from tools.import_graph import (
    REPO_ROOT,
    cycles,
    import_sites,
    mermaid,
    module_graph,
    readme_block,
    unit_graph,
    unit_of,
)

# Mock Treserva (sp_demo) is the SP that checks the IdP: it imports no IdP code, so it cannot
# share the IdP's judgement (it reads and verifies the IdP's messages with pysaml2 and its own
# sp_demo.bindings). The one exception is `make demo`'s launcher, sp_demo/demo.py, which starts
# the IdP beside Treserva and uses the test kit for the demo's test PKI: siths_testkit.pki
# (creating the PKI), siths_testkit.pki.revocation (the OCSP/CRL URL the cards point to) and
# siths_testkit.pki.softhsm (whether the demo employee's card is already in SoftHSM). Nothing
# of Treserva's app or command imports the launcher.
SP_DEMO_TEST_KIT_USER = "sp_demo.demo"
SP_DEMO_APPLICATION = ("sp_demo.app", "sp_demo.cli")


def test_the_toy_graph_functions_find_what_they_should() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "c"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
    # a → c is implied by a → b → c: the diagram leaves it out.
    assert mermaid({"a": {"b", "c"}, "b": {"c"}, "c": set()}).splitlines()[-3:-1] == [
        "    a --> b",
        "    b --> c",
    ]
    assert unit_of("idp.saml.server") == "idp.saml"
    assert unit_of("idp.services") == "idp.services"
    assert unit_of("sp_demo.slo") == "sp_demo"
    assert unit_of("siths_testkit.pki.cards") == "siths_testkit"


def test_no_import_cycle_between_packages() -> None:
    assert cycles(unit_graph()) == []


def test_no_import_cycle_between_modules() -> None:
    assert cycles(module_graph()) == []


def test_no_import_inside_a_function() -> None:
    nested = [
        f"{site.path.relative_to(REPO_ROOT)}:{site.line} imports {site.target}"
        for site in import_sites()
        if site.in_function
    ]
    assert nested == []


def test_the_idp_never_imports_the_applications_around_it() -> None:
    offending = [
        f"{site.module} imports {site.target}"
        for site in import_sites()
        if unit_of(site.module).startswith("idp")
        and site.target.split(".")[0] in ("sp_demo", "portal")
    ]
    assert offending == []


def test_the_idp_never_imports_the_test_kit() -> None:
    """The test PKI, the app simulator and the load drivers are not the product: the IdP reaches
    them only through the `idp` command's entry points (idp/command_plugins.py)."""
    kit_imports = [site for site in import_sites() if site.module.startswith("siths_testkit.")]
    assert any(site.target.startswith("idp.") for site in kit_imports)  # the check sees both
    offending = [
        f"{site.path.relative_to(REPO_ROOT)}:{site.line} imports {site.target}"
        for site in import_sites()
        if site.module.split(".")[0] == "idp" and site.target.split(".")[0] == "siths_testkit"
    ]
    assert offending == []


def test_mock_treserva_imports_no_idp_code() -> None:
    sp_imports = [site for site in import_sites() if unit_of(site.module) == "sp_demo"]
    assert any(site.target == "sp_demo.bindings" for site in sp_imports)  # the check sees them
    idp_imports = [
        f"{site.module}:{site.line} imports {site.target}"
        for site in sp_imports
        if site.target.split(".")[0] == "idp"
    ]
    assert idp_imports == []
    kit_users = {site.module for site in sp_imports if site.target.split(".")[0] == "siths_testkit"}
    assert kit_users == {SP_DEMO_TEST_KIT_USER}


def test_mock_treserva_never_runs_idp_code() -> None:
    """Not even through another package: Treserva's app and its command reach no module of the
    IdP or the test kit. (The demo launcher does, through the test kit: the check sees that.)"""
    graph = module_graph()
    for start in SP_DEMO_APPLICATION:
        reached = _reachable(graph, start)
        assert SP_DEMO_TEST_KIT_USER not in reached, start
        foreign = sorted(m for m in reached if m.split(".")[0] in ("idp", "siths_testkit"))
        assert foreign == [], (start, foreign)
    # The walk follows imports across packages: the app reaches its SAML reader, and the
    # launcher reaches the IdP through the test kit.
    assert "sp_demo.bindings" in _reachable(graph, "sp_demo.app")
    assert any(m.startswith("idp.") for m in _reachable(graph, SP_DEMO_TEST_KIT_USER))


def test_the_readme_diagram_is_the_generated_one() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_block(readme) == mermaid(unit_graph()), (
        "the README's package diagram is stale: python -m tools.import_graph --update README.md"
    )


# The login's application layer is plain Python: HTTP, pages and protocols are adapters
# around it (the routers parse, call idp.login, and render or map the refusal).
LOGIN_LAYER_MUST_NOT_IMPORT = (
    "starlette",
    "fastapi",
    "idp.web",
    "idp.saml",
    "idp.oidc",
    "idp.methods",
    "idp.services",
)


def _names_any(target: str, prefixes: tuple[str, ...]) -> bool:
    return any(target == prefix or target.startswith(f"{prefix}.") for prefix in prefixes)


def test_the_login_layer_imports_no_http_and_no_protocol() -> None:
    login_imports = [site for site in import_sites() if unit_of(site.module) == "idp.login"]
    assert any(site.target == "idp.login.pending" for site in login_imports)
    offending = [
        f"{site.module} imports {site.target}"
        for site in login_imports
        if _names_any(site.target, LOGIN_LAYER_MUST_NOT_IMPORT)
    ]
    assert offending == []
    # The check itself tells an adapter's import from a neighbour's name.
    assert _names_any("starlette.requests", LOGIN_LAYER_MUST_NOT_IMPORT)
    assert not _names_any("idp.webhooks", LOGIN_LAYER_MUST_NOT_IMPORT)


# The SAML side's use cases (single sign-on, single logout) are plain Python too: only their
# endpoints (idp.saml.endpoints, idp.saml.slo_endpoints) know HTTP.
SAML_USE_CASES = ("idp.saml.sso", "idp.saml.slo")
USE_CASES_MUST_NOT_REACH = ("starlette", "fastapi", "idp.web", "idp.services", "idp.methods")


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return seen


def test_the_saml_use_cases_reach_no_http_framework_and_no_pages() -> None:
    graph = module_graph()
    reached = set().union(*(_reachable(graph, module) for module in SAML_USE_CASES))
    assert {"idp.saml.server", "idp.login.pending"} <= reached
    offending = [
        f"{site.module} imports {site.target}"
        for site in import_sites()
        if site.module in reached and _names_any(site.target, USE_CASES_MUST_NOT_REACH)
    ]
    assert offending == []
    # The endpoints that call them do reach the framework: the check sees it.
    endpoints = _reachable(graph, "idp.saml.endpoints")
    assert any(
        _names_any(site.target, USE_CASES_MUST_NOT_REACH)
        for site in import_sites()
        if site.module in endpoints
    )


# Issue 16's bound: a function longer than this is doing more than one thing. Migrations are
# exempt (a schema is one long list of tables), as are the decorators above a `def` (click's
# options are declarations, not logic).
MAX_FUNCTION_LINES = 60
LENGTH_CHECKED = ("idp", "sp_demo", "portal", "siths_testkit", "tools")


def _long_functions(source: str) -> list[tuple[str, int]]:
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_the_length_check_finds_a_long_function() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    assert _long_functions(f"def long():\n{body}\n") == [("long", MAX_FUNCTION_LINES + 1)]
    assert _long_functions("def short():\n    return 1\n") == []


def test_no_function_over_sixty_lines() -> None:
    too_long = [
        f"{path.relative_to(REPO_ROOT)}: {name} ({lines} lines)"
        for package in LENGTH_CHECKED
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
        for name, lines in _long_functions(path.read_text(encoding="utf-8"))
    ]
    assert too_long == []

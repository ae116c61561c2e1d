"""Mock Treserva's SCIM 2.0 API and its permission-move integration, through the ASGI app; the
portal's end-to-end test drives the same endpoints over real TLS."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sp_demo import audit
from sp_demo.app import create_app
from sp_demo.config import Settings
from sp_demo.db import Database, find_user_by_windows_account, seed_demo_users
from sp_demo.scim import HSA_ID_PATH, PATCH_SCHEMA, TRESERVA_SCHEMA

TOKEN = "scim-test-token-" + "t" * 24
BASE = "https://treserva-scim.example.test"


@pytest.fixture
def treserva(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(base_url=BASE, var_dir=tmp_path, session_secret="s" * 40, scim_token=TOKEN)
    app = create_app(settings)
    with app.state.database.session() as session:
        seed_demo_users(session)
    with TestClient(app, base_url=BASE, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def find(client: TestClient, user_name: str) -> dict:
    found = client.get("/scim/v2/Users", params={"filter": f"userName eq {json.dumps(user_name)}"})
    assert found.status_code == 200
    assert found.headers["content-type"].startswith("application/scim+json")
    return found.json()


def test_without_the_token_nothing_is_served(tmp_path: Path, treserva: TestClient) -> None:
    assert (
        treserva.get("/scim/v2/Users", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    assert treserva.get("/scim/v2/Users", headers={"Authorization": ""}).status_code == 401
    moved = treserva.post(
        "/integration/v1/permission-moves",
        json={"userName": "GBGSTAD\\doris.dahl", "ticket": "1"},
        headers={"Authorization": "Basic " + TOKEN},
    )
    assert moved.status_code == 401
    off = create_app(Settings(base_url=BASE, var_dir=tmp_path / "off", session_secret="s" * 40))
    with TestClient(off, base_url=BASE) as client:
        assert (
            client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {TOKEN}"}).status_code
            == 404
        )


def test_filter_create_patch_and_deactivate_with_etags(treserva: TestClient) -> None:
    assert find(treserva, "OMSORGVAST\\fatima.fors")["totalResults"] == 0
    created = treserva.post(
        "/scim/v2/Users",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "OMSORGVAST\\fatima.fors",
            "displayName": "Fatima Fors",
        },
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert created.headers["location"] == f"{BASE}/scim/v2/Users/{user['id']}"
    assert created.headers["etag"] == user["meta"]["version"]
    assert user["active"] is True and user[TRESERVA_SCHEMA] == {}
    again = treserva.post(
        "/scim/v2/Users", json={"userName": "OMSORGVAST\\fatima.fors", "displayName": "X"}
    )
    assert again.status_code == 409 and again.json()["scimType"] == "uniqueness"
    patch = {
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "add", "path": HSA_ID_PATH, "value": "SE2120001355-U000042"}],
    }
    patched = treserva.patch(
        f"/scim/v2/Users/{user['id']}", json=patch, headers={"If-Match": user["meta"]["version"]}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()[TRESERVA_SCHEMA] == {"hsaId": "SE2120001355-U000042"}
    assert patched.headers["etag"] != user["meta"]["version"]
    # A writer holding the old ETag is refused.
    stale = treserva.patch(
        f"/scim/v2/Users/{user['id']}",
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "replace", "path": "displayName", "value": "F. Fors"}],
        },
        headers={"If-Match": user["meta"]["version"]},
    )
    assert stale.status_code == 412
    deactivated = treserva.patch(
        f"/scim/v2/Users/{user['id']}",
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "replace", "value": {"active": False}}],
        },
        headers={"If-Match": patched.headers["etag"]},
    )
    assert deactivated.status_code == 200 and deactivated.json()["active"] is False
    assert treserva.get(f"/scim/v2/Users/{user['id']}").json()["active"] is False
    with treserva.app.state.database.session() as session:
        actions = [e.action for e in audit.recent_events(session)]
    assert {"scim_create", "register_hsa_id", "scim_deactivate"} <= set(actions)


@pytest.mark.parametrize(
    ("operation", "status", "scim_type"),
    [
        ({"op": "add", "path": HSA_ID_PATH, "value": "not-an-hsa-id"}, 400, "invalidValue"),
        ({"op": "add", "path": HSA_ID_PATH, "value": "SE2120001355-E0002"}, 409, "uniqueness"),
        ({"op": "remove", "path": "active"}, 400, "invalidSyntax"),
        ({"op": "replace", "path": "emails", "value": []}, 400, "invalidPath"),
        ({"op": "replace", "path": "active", "value": "no"}, 400, "invalidValue"),
    ],
)
def test_bad_patches_are_refused(
    treserva: TestClient, operation: dict, status: int, scim_type: str
) -> None:
    doris = find(treserva, "GBGSTAD\\doris.dahl")["Resources"][0]
    answer = treserva.patch(
        f"/scim/v2/Users/{doris['id']}", json={"schemas": [PATCH_SCHEMA], "Operations": [operation]}
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["scimType"] == scim_type
    assert treserva.get(f"/scim/v2/Users/{doris['id']}").json() == doris


def test_unknown_user_and_bad_filter(treserva: TestClient) -> None:
    assert treserva.get("/scim/v2/Users/9999").status_code == 404
    assert (
        treserva.get("/scim/v2/Users", params={"filter": 'displayName co "a"'}).status_code == 400
    )
    assert treserva.patch("/scim/v2/Users/1", content=b"[1]").status_code == 400
    unescaped = treserva.get("/scim/v2/Users", params={"filter": 'userName eq "A\\q"'})
    assert unescaped.status_code == 400 and unescaped.json()["scimType"] == "invalidFilter"


def test_permission_move_for_a_ticket(treserva: TestClient) -> None:
    doris = find(treserva, "GBGSTAD\\doris.dahl")["Resources"][0]
    refused = treserva.post(
        "/integration/v1/permission-moves",
        json={"userName": "GBGSTAD\\doris.dahl", "ticket": "T-1"},
    )
    assert refused.status_code == 409 and refused.json()["code"] == "no_hsa_id"
    treserva.patch(
        f"/scim/v2/Users/{doris['id']}",
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "add", "path": HSA_ID_PATH, "value": "SE2120001355-E0004"}],
        },
    )
    moved = treserva.post(
        "/integration/v1/permission-moves",
        json={"userName": "GBGSTAD\\doris.dahl", "ticket": "T-1"},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["moved"] == [{"role": "handläggare", "unit": "Biståndsenheten Lundby"}]
    unknown = treserva.post(
        "/integration/v1/permission-moves", json={"userName": "NOBODY\\x", "ticket": "T-2"}
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_account"
    with treserva.app.state.database.session() as session:
        event = next(e for e in audit.recent_events(session) if e.action == "move_permissions")
    assert event.actor == "support ticket T-1"


def test_a_register_made_before_deactivation_existed_gets_active_accounts(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.executescript(
            """
            CREATE TABLE users (id INTEGER PRIMARY KEY, windows_account VARCHAR(100) UNIQUE,
                display_name VARCHAR(200), hsa_id VARCHAR(31) UNIQUE);
            CREATE TABLE permissions (id INTEGER PRIMARY KEY, user_id INTEGER, role VARCHAR(100),
                unit VARCHAR(200), login VARCHAR(10));
            INSERT INTO users VALUES (1, 'GBGSTAD\\old', 'Olle Old', NULL);
            """
        )
    database = Database(f"sqlite:///{path}")
    with database.session() as session:
        user = find_user_by_windows_account(session, "GBGSTAD\\old")
        assert user is not None and user.active is True
    database.dispose()

"""Mock Treserva as the portal reaches it: SCIM 2.0 for the HSA-ID (step 7) and the
permission-move integration for a support ticket (step 8), over HTTPS with the bearer token
``Settings.treserva_token``, trusting ``Settings.tls_ca_file``.

Every failure comes out as :class:`~portal.refusals.Refused`: ``treserva_unavailable`` when
Treserva cannot be reached, ``treserva_refused`` (with Treserva's own words as the detail) when
it says no.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from portal.config import Settings
from portal.refusals import Refused

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
TRESERVA_SCHEMA = "urn:goteborg:params:scim:schemas:extension:treserva:1.0:User"


@dataclass(frozen=True)
class Upserted:
    scim_id: str
    created: bool
    changed: bool


class TreservaClient:
    def __init__(self, settings: Settings) -> None:
        if not settings.treserva_token:
            raise Refused("treserva_not_configured")
        try:
            verify = ssl.create_default_context(cafile=str(settings.tls_ca_file))
        except OSError as exc:
            raise Refused("treserva_unavailable", f"TLS CA {settings.tls_ca_file}: {exc}") from exc
        self._http = httpx.Client(
            base_url=settings.treserva_url,
            verify=verify,
            timeout=15,
            follow_redirects=False,
            headers={"Authorization": f"Bearer {settings.treserva_token}"},
        )

    def __enter__(self) -> TreservaClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Refused("treserva_unavailable", type(exc).__name__) from exc

    @staticmethod
    def _refused(response: httpx.Response) -> Refused:
        try:
            body = response.json()
            # Treserva's own words: Swedish where it has them (the ticket shows them).
            detail = str(body.get("sv") or body.get("detail") or body)
        except ValueError:
            detail = response.text[:200]
        return Refused("treserva_refused", f"{response.status_code}: {detail}"[:300])

    def upsert_hsa_id(self, user_name: str, display_name: str, hsa_id: str) -> Upserted:
        """Make the account ``user_name`` carry ``hsa_id``: PATCH it (with If-Match on the
        ETag just read) if it exists, else create it. Repeating it changes nothing."""
        found = self._send(
            "GET", "/scim/v2/Users", params={"filter": f"userName eq {json.dumps(user_name)}"}
        )
        if found.status_code != 200:
            raise self._refused(found)
        resources = found.json().get("Resources", [])
        if not resources:
            created = self._send(
                "POST",
                "/scim/v2/Users",
                json={
                    "schemas": [USER_SCHEMA, TRESERVA_SCHEMA],
                    "userName": user_name,
                    "displayName": display_name,
                    TRESERVA_SCHEMA: {"hsaId": hsa_id},
                },
            )
            if created.status_code != 201:
                raise self._refused(created)
            return Upserted(created.json()["id"], created=True, changed=True)
        user = resources[0]
        if (user.get(TRESERVA_SCHEMA) or {}).get("hsaId") == hsa_id and user.get("active"):
            return Upserted(user["id"], created=False, changed=False)
        patched = self._send(
            "PATCH",
            f"/scim/v2/Users/{user['id']}",
            headers={"If-Match": user["meta"]["version"]},
            json={
                "schemas": [PATCH_SCHEMA],
                "Operations": [
                    {"op": "add", "path": f"{TRESERVA_SCHEMA}:hsaId", "value": hsa_id},
                    {"op": "replace", "path": "active", "value": True},
                ],
            },
        )
        if patched.status_code != 200:
            raise self._refused(patched)
        return Upserted(user["id"], created=False, changed=True)

    def move_permissions(self, user_name: str, ticket: str) -> str:
        """Carry out the permission move for ``ticket``; return what was moved, in words."""
        moved = self._send(
            "POST",
            "/integration/v1/permission-moves",
            json={"userName": user_name, "ticket": ticket},
        )
        if moved.status_code != 200:
            raise self._refused(moved)
        body = moved.json()
        if not body["moved"]:
            return "inga behörigheter låg kvar på Windows-inloggningen"
        return f"flyttade till SITHS-inloggningen ({body['hsaId']}): {body['description']}"

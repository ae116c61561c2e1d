"""``/saml/metadata``: the IdP's own signed metadata, as the running SAML side is configured."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from idp.federation.idp_metadata import idp_metadata_xml
from idp.saml.server import SamlIdentityProvider


def metadata_router(saml: SamlIdentityProvider) -> APIRouter:
    """``/saml/metadata`` for ``saml`` (built once at start-up)."""
    router = APIRouter()

    @router.get("/saml/metadata")
    async def metadata() -> Response:
        xml = await run_in_threadpool(idp_metadata_xml, saml)
        return Response(xml, media_type="application/samlmetadata+xml")

    return router

"""Adding a module's endpoints to the app as the app's own routes."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Add ``router``'s routes to ``app`` directly, in order.

    ``app.include_router`` (FastAPI 0.165) keeps each router as a nested one and, on every
    request, walks the nested routers' route lists (and recomputes their version counters) to
    match the path: about half of the IdP's per-request framework time, measured in process.
    The IdP's routers carry no prefix, dependencies or tags of their own at inclusion (their
    paths are complete), so their routes can be the app's own.
    """
    app.router.routes.extend(router.routes)

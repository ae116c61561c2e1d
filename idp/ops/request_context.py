"""The id of the request being served, for the logs (``idp.server.logging_setup`` adds it).

A context variable: it follows the request into ``run_in_threadpool`` and ``asyncio.to_thread``
(both copy the context), so audit lines written from worker threads carry it too.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"
# What an id from the proxy may look like (nginx's $request_id is 32 hex digits): anything
# else is replaced, so a client cannot write arbitrary text into the logs through it.
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._-]{8,64}")

request_id_var: ContextVar[str | None] = ContextVar("idp_request_id", default=None)


def current_request_id() -> str | None:
    return request_id_var.get()


def new_request_id() -> str:
    return secrets.token_hex(16)


def acceptable_request_id(value: str | None) -> bool:
    return bool(value) and _ACCEPTABLE.fullmatch(value or "") is not None

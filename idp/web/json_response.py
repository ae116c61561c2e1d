"""``JsonResponse``: Starlette's ``JSONResponse`` with the body built by orjson.

The same compact UTF-8 JSON as Starlette's (``ensure_ascii=False``, no spaces), built in C
instead of by the standard library's encoder: for the answers that are polled or called on
every login (collect, the app API's errors, OIDC's token, userinfo, discovery and keys).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class JsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)

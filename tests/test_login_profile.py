"""benchmarks/login_profile.py's sorting of py-spy samples into the profile's categories: the
frame nearest the leaf that names a category decides, whatever called it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import login_profile

ROOT = "thread (1): MainThread;serve (idp/server/serve.py:20);Runner.run (asyncio/runners.py:118)"


def sample(*frames: str, count: int = 1) -> str:
    return ";".join((ROOT, *frames)) + f" {count}"


def test_the_frame_nearest_the_leaf_decides() -> None:
    counts = login_profile.categorise(
        [
            # The login's use case running a statement: SQLAlchemy's work, not the login's.
            sample(
                "certificate_login (idp/methods/this_device.py:60)",
                "execute (sqlalchemy/engine/base.py:1450)",
                count=3,
            ),
            # Signing under the SAML responder under the framework: the Response's.
            sample(
                "app (starlette/routing.py:73)",
                "build_login_response (idp/saml/response.py:260)",
                "sign_enveloped (idp/saml/xmlsec_backend.py:80)",
                count=2,
            ),
            sample("do_handshake (ssl.py:979)"),
            sample("root (post_binding.html:15)"),
            sample("emit (logging/__init__.py:1706)"),
            # Only the loop itself: the framework and loop's.
            sample(count=4),
        ]
    )
    assert counts == {
        "SQLAlchemy + SQLite": 3,
        "building and signing the Response": 2,
        "TLS: the main port (ssl)": 1,
        "Jinja2": 1,
        "audit and log lines": 1,
        "web framework and event loop": 4,
    }


def test_a_sample_naming_no_category_is_the_rest_and_broken_lines_are_skipped() -> None:
    counts = login_profile.categorise(
        [
            "thread (1): MainThread;main (tool.py:3);sha256 (hashlib.py:10) 5\n",
            "\n",
            "no count here\n",
            "frame (x.py:1) not-a-number\n",
        ]
    )
    assert counts == {login_profile.OTHER: 5}

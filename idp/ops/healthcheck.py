"""``python -m idp.ops.healthcheck [--live]``: the container's HEALTHCHECK.

Asks this node's own ``/readyz`` (``--live``: ``/healthz``) on 127.0.0.1, over plain HTTP
behind a proxy and HTTPS when embedded; exits 0 when it answers 200, else 1. Imports only the
settings, so a probe every few seconds costs little.
"""

from __future__ import annotations

import ssl
import sys
import urllib.error
import urllib.request

from idp.config import Settings


def probe_url(settings: Settings, *, live: bool) -> str:
    scheme = "http" if settings.behind_proxy else "https"
    return f"{scheme}://127.0.0.1:{settings.port}/{'healthz' if live else 'readyz'}"


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    settings = Settings()
    url = probe_url(settings, live="--live" in arguments)
    # The node asking itself over loopback: its certificate names the public host, not
    # 127.0.0.1, and there is nobody in between to verify against.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as answer:  # noqa: S310
            return 0 if answer.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

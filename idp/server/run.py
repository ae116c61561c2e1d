"""Run the embedded deployment: uvicorn on the HTTPS port, the certificate listener beside it."""

from __future__ import annotations

import asyncio

import uvicorn

from idp.app import create_app
from idp.config import Settings
from idp.server.cert_listener import CertificateListener
from idp.server.logging_setup import configure_logging


def serve(settings: Settings, *, log_level: str = "info") -> None:
    """Serve until interrupted. Both listeners share one app, one database, one event loop."""
    configure_logging(log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.tls_cert),
        ssl_keyfile=str(settings.tls_key),
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
        # Idle keep-alive connections must not hold a stopping node up.
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    listener = CertificateListener(
        app,
        host=settings.host,
        port=settings.cert_port,
        cert_file=settings.tls_cert,
        key_file=settings.tls_key,
        strip_header=settings.client_cert_header,
    )

    async def main() -> None:
        await listener.start()
        try:
            await server.serve()
        finally:
            await listener.close()

    asyncio.run(main())

"""``idp serve``: a node in this process, or a supervisor of ``workers`` worker processes."""

from __future__ import annotations

from idp.app import create_app
from idp.config import Settings
from idp.server.logging_setup import configure_logging
from idp.server.run import check_settings, run_node
from idp.server.supervisor import supervise


def serve(settings: Settings, *, log_level: str = "info") -> None:
    """Serve until interrupted: in this process (``settings.workers`` == 1), where all listeners
    share one app, one database, one event loop; or as a supervisor of that many workers."""
    check_settings(settings)
    if settings.workers > 1:
        supervise(settings, log_level=log_level)
        return
    configure_logging(log_level, node=settings.node_name)
    run_node(create_app(settings), settings, log_level)

"""Alembic's environment for the portal: migrate the connection :mod:`portal.db` hands over."""

from __future__ import annotations

from alembic import context

from portal.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
    # The IdP's tables may share a database in a small setup; the portal's version table is
    # its own.
    version_table="portal_alembic_version",
)
with context.begin_transaction():
    context.run_migrations()

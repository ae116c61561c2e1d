"""Alembic's environment: run migrations on the connection :mod:`idp.db` hands over.

Never run as a script: ``idp.db.upgrade_schema`` (and ``idp db …``) put an open connection in
``config.attributes["connection"]`` and hold the migration lock around it.
"""

from __future__ import annotations

from alembic import context

from idp.db import Base, import_model_modules

import_model_modules()

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters tables by copying them; batch mode makes autogenerate write that form.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

"""seen messages remember the login they started

Revision 0002, written 2026-12-07. An accepted AuthnRequest's row names the pending login it
started and the request id it arrived under, so that the same browser reloading the chooser
(the answer to that request), or a proxy's retry of that very request at another node, gets
the same login instead of a replay refusal. Rows written before have neither: their requests
are refused as replays, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("seen_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pending_login", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("delivery", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("seen_messages", schema=None) as batch_op:
        batch_op.drop_column("delivery")
        batch_op.drop_column("pending_login")

"""Call start/end pairing state: call_event_halves.

One row per (call id, type) half; ``paired_at`` marks the halves of a call whose CDR is stored
(they are kept, so a late duplicate is recognised as one). A partial index on ``received_at`` over
the unpaired rows serves ``GET /v1/events/pending``. A plain table on both PostgreSQL and SQLite:
``cdrs`` is partitioned on PostgreSQL (0002), this table is small and is not.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

from cdrkit.db import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_event_halves",
        sa.Column("call_id", sa.String(128), nullable=False),
        sa.Column("type", sa.String(8), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("event_time", UtcDateTime, nullable=False),
        sa.Column("source", sa.String(32)),
        sa.Column("destination", sa.String(32)),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("envelope_id", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.Column("stored_at", UtcDateTime, nullable=False),
        sa.Column("paired_at", UtcDateTime),
        sa.PrimaryKeyConstraint("call_id", "type"),
    )
    op.create_index(
        "ix_call_event_halves_pending",
        "call_event_halves",
        ["received_at"],
        postgresql_where=sa.text("paired_at IS NULL"),
        sqlite_where=sa.text("paired_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_call_event_halves_pending", "call_event_halves")
    op.drop_table("call_event_halves")

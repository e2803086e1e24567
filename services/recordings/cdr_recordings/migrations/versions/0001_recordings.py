"""Recording index with archive state.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from cdrkit.db import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("call_id", sa.String(128), primary_key=True),
        sa.Column("recording_path", sa.Text, nullable=False),
        sa.Column("relative_path", sa.Text),
        sa.Column("tenant", sa.String(255)),
        sa.Column("start_time", UtcDateTime, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("s3_key", sa.Text),
        sa.Column("upload_id", sa.Text),
        sa.Column("sha256", sa.String(64)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("indexed_at", UtcDateTime, nullable=False),
        sa.Column("archived_at", UtcDateTime),
    )
    op.create_index("ix_recordings_state_start_time", "recordings", ["state", "start_time"])


def downgrade() -> None:
    op.drop_table("recordings")

"""The edge device registry: edge_devices, one row per ``cdrflow edge`` agent.

Filled from the agents' check-ins (``edge.checkin`` envelopes on ``cdr.raw``); served by
``GET /v1/edge/devices``.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

from cdrkit.db import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edge_devices",
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("first_seen", UtcDateTime, nullable=False),
        sa.Column("last_seen", UtcDateTime, nullable=False),
        sa.Column("version", sa.String(64)),
        sa.Column("source", sa.String(32)),
        sa.Column("source_state", sa.String(16)),
        sa.Column("source_error", sa.String(500)),
        sa.Column("last_line_at", UtcDateTime),
        sa.Column("pbx_timezone", sa.String(64)),
        sa.Column("queue_depth", sa.BigInteger),
        sa.Column("queue_full", sa.Boolean),
        sa.Column("oldest_age_s", sa.Float),
        sa.Column("rejected", sa.BigInteger),
        sa.Column("uptime_s", sa.Float),
        sa.Column("checkin_interval_s", sa.Float),
        sa.Column("remote_addr", sa.String(64)),
    )


def downgrade() -> None:
    op.drop_table("edge_devices")

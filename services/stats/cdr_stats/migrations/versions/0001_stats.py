"""Stats: stats_buckets, stats_seen, stats_alerts.

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
        "stats_buckets",
        sa.Column("dim", sa.String(16), primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("value", sa.String(255), primary_key=True),
        sa.Column("metric", sa.String(160), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("sum", sa.Float, nullable=False),
        sa.Column("squares", sa.Float, nullable=False),
        sa.Column("min", sa.Float),
        sa.Column("max", sa.Float),
    )
    op.create_index("ix_stats_buckets_bucket", "stats_buckets", ["bucket"])
    op.create_table(
        "stats_seen",
        sa.Column("call_id", sa.String(128), primary_key=True),
        sa.Column("bucket", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_stats_seen_bucket", "stats_seen", ["bucket"])
    op.create_table(
        "stats_alerts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("dedup_key", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_stats_alerts_created_at", "stats_alerts", ["created_at"])


def downgrade() -> None:
    op.drop_table("stats_alerts")
    op.drop_table("stats_seen")
    op.drop_table("stats_buckets")

"""CDR store: cdrs, raw_payloads, dead_letters.

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
        "cdrs",
        sa.Column("call_id", sa.String(128), primary_key=True),
        sa.Column("schema_version", sa.SmallInteger, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("origin_host", sa.String(255)),
        sa.Column("leg", sa.String(1)),
        sa.Column("other_leg_id", sa.String(128)),
        sa.Column("direction", sa.String(16)),
        sa.Column("caller_number", sa.String(64)),
        sa.Column("caller_name", sa.String(255)),
        sa.Column("callee_number", sa.String(64)),
        sa.Column("account", sa.String(128)),
        sa.Column("tenant", sa.String(255)),
        sa.Column("carrier", sa.String(128)),
        sa.Column("start_time", UtcDateTime, nullable=False),
        sa.Column("answer_time", UtcDateTime),
        sa.Column("end_time", UtcDateTime),
        sa.Column("duration_s", sa.Integer),
        sa.Column("billsec_s", sa.Integer),
        sa.Column("disposition", sa.String(16)),
        sa.Column("hangup_cause", sa.String(64)),
        sa.Column("sip_code", sa.SmallInteger),
        sa.Column("pdd_ms", sa.Integer),
        sa.Column("recording_path", sa.Text),
        sa.Column("codec", sa.String(32)),
        sa.Column("extra", sa.JSON, nullable=False),
        sa.Column("received_at", UtcDateTime),
        sa.Column("stored_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_cdrs_start_time", "cdrs", ["start_time", "call_id"])
    op.create_index("ix_cdrs_account_start_time", "cdrs", ["account", "start_time"])
    op.create_index("ix_cdrs_caller_number", "cdrs", ["caller_number"])
    op.create_index("ix_cdrs_callee_number", "cdrs", ["callee_number"])

    op.create_table(
        "raw_payloads",
        sa.Column("call_id", sa.String(128), primary_key=True),
        sa.Column("envelope_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("content_type", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("payload", sa.Text),
        sa.Column("payload_ref", sa.Text),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.Column("stored_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_raw_payloads_received_at", "raw_payloads", ["received_at"])

    op.create_table(
        "dead_letters",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("dedup_key", sa.String(200), nullable=False, unique=True),
        sa.Column("envelope_id", sa.String(64)),
        sa.Column("call_id", sa.String(128)),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("error", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("topic", sa.String(255)),
        sa.Column("partition", sa.Integer),
        sa.Column("offset", sa.BigInteger),
        sa.Column("envelope", sa.JSON),
        sa.Column("raw_value", sa.Text),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("retried_at", UtcDateTime),
    )
    op.create_index("ix_dead_letters_created_at", "dead_letters", ["created_at"])


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("raw_payloads")
    op.drop_table("cdrs")

"""Pexip Infinity conferences and the participant → conference links.

Plain tables on both PostgreSQL and SQLite (small next to ``cdrs``); see ``cdr_parser.models``.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

from cdrkit.db import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pexip_conferences",
        sa.Column("conference_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(255)),
        sa.Column("service_type", sa.String(32)),
        sa.Column("tag", sa.String(255)),
        sa.Column("start_time", UtcDateTime),
        sa.Column("end_time", UtcDateTime),
        sa.Column("duration_s", sa.Integer),
        sa.Column("participant_count", sa.Integer),
        sa.Column("participant_ids", sa.JSON, nullable=False),
        sa.Column("feed", sa.String(16), nullable=False),
        sa.Column("stored_at", UtcDateTime, nullable=False),
    )
    op.create_index(
        "ix_pexip_conferences_end_time", "pexip_conferences", ["end_time", "conference_id"]
    )
    op.create_table(
        "pexip_participant_links",
        sa.Column("call_id", sa.String(128), primary_key=True),
        sa.Column("conference_id", sa.String(128), nullable=False),
    )
    op.create_index(
        "ix_pexip_participant_links_conference",
        "pexip_participant_links",
        ["conference_id", "call_id"],
    )


def downgrade() -> None:
    op.drop_table("pexip_participant_links")
    op.drop_table("pexip_conferences")

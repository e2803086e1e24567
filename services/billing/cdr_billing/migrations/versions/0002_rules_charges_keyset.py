"""Tariff rules (overnight bands, on-net ranges, free prefixes) and the charges keyset index.

``tariffs.rules`` is NULL on the versions stored before it (they keep reading a band across
midnight as running into the next day). ``charges`` gets (subscriber, end_time, call_id) for
``GET /v1/charges`` keyset pages and bills, replacing (subscriber, end_time).

0001 creates the tables as models.py declares them *now*, so on a fresh database both already
exist: each step checks first.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "rules" not in {c["name"] for c in inspector.get_columns("tariffs")}:
        op.add_column("tariffs", sa.Column("rules", sa.JSON()))
    indexes = {i["name"] for i in inspector.get_indexes("charges")}
    if "ix_charges_subscriber_end_time_call_id" not in indexes:
        op.create_index(
            "ix_charges_subscriber_end_time_call_id",
            "charges",
            ["subscriber", "end_time", "call_id"],
        )
    if "ix_charges_subscriber_end_time" in indexes:
        op.drop_index("ix_charges_subscriber_end_time", "charges")


def downgrade() -> None:
    op.create_index("ix_charges_subscriber_end_time", "charges", ["subscriber", "end_time"])
    op.drop_index("ix_charges_subscriber_end_time_call_id", "charges")
    op.drop_column("tariffs", "rules")

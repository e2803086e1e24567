"""Listing indexes for the GET /v1/cdrs filters source, carrier, tenant and direction.

Each ends in (start_time, call_id), the keyset order of the listing, like those of 0002, so a
filtered page stays an index range read. On the partitioned PostgreSQL table an index on the
parent is created on every partition (and on the ones attached later).

Revision ID: 0004
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

FILTER_INDEXES = {
    f"ix_cdrs_{column}": [column, "start_time", "call_id"]
    for column in ("source", "carrier", "tenant", "direction")
}


def upgrade() -> None:
    for name, cols in FILTER_INDEXES.items():
        op.create_index(name, "cdrs", cols)


def downgrade() -> None:
    for name in FILTER_INDEXES:
        op.drop_index(name, "cdrs")

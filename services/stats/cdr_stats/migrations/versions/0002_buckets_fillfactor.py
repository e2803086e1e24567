"""Stats: leave room in stats_buckets' pages (PostgreSQL) for HOT updates.

Every batch adds its deltas to the same few thousand rows of the current buckets. With free space
in the page, PostgreSQL writes the new row version next to the old one without touching the
indexes (a heap-only tuple): the batch upsert costs about 40 % less than with full pages.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE stats_buckets SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE stats_buckets RESET (fillfactor)")

"""Raw payloads stored lz4-compressed by the parser (``raw_payloads.payload_lz4``, issue 15).

A FreeSWITCH CDR is 10-15 KB of XML. Stored as text, each one travelled whole to the database and
was compressed there (lz4 since 0007): ~65 µs of PostgreSQL CPU and ~35-50 µs of the parser's
per CDR, the largest share of the store statement. The parser now compresses it itself (lz4
block with its size, ~15 µs) and the database keeps the ~3.7 KB it gets as it is: on PostgreSQL
the column is ``STORAGE EXTERNAL`` (TOASTed without a second, useless compression attempt).
SQLite, which never compressed, stores a third of the bytes.

Rows stored before keep their text in ``payload``; readers take whichever column is set, so
nothing is rewritten. Downgrade drops the column: run it only after the payloads stored since
are past their retention, or they are lost.

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("raw_payloads", sa.Column("payload_lz4", sa.LargeBinary))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE raw_payloads ALTER COLUMN payload_lz4 SET STORAGE EXTERNAL")


def downgrade() -> None:
    with op.batch_alter_table("raw_payloads") as batch:
        batch.drop_column("payload_lz4")

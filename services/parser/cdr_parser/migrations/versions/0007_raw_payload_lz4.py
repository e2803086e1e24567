"""Raw payloads compressed with lz4 instead of pglz on PostgreSQL (issue 15).

A FreeSWITCH CDR is 10-15 KB of XML, stored whole in ``raw_payloads.payload``: PostgreSQL
compresses it when it is TOASTed, with pglz by default. pglz cost ~230 µs of server CPU per 14 KB
row in our measurement, lz4 ~60 µs (the row ~15 % larger), and that was the largest share of the
database's CPU per CDR. Only new values are written with lz4; rows already stored stay as they
are (both read the same). Servers built without lz4 (or before 14) keep pglz: the change is
skipped, nothing fails. SQLite: nothing to do.

Revision ID: 0007
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SET = """
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        ALTER TABLE raw_payloads ALTER COLUMN payload SET COMPRESSION {method};
    END IF;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'raw_payloads.payload keeps the default compression: %', SQLERRM;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(SET.format(method="lz4"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(SET.format(method="pglz"))

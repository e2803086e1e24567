"""Partition cdrs by month on PostgreSQL; listing indexes; dead-letter retry columns.

On PostgreSQL the plain ``cdrs`` table of 0001 becomes a table range-partitioned by month on
``start_time``, with a default partition so that no start time is ever refused, and ``cdr_keys``
(call id → start time) carries the uniqueness on call id that a partitioned table cannot. Rows
already stored move into the new table. ``cdrs_ensure_partition(ts)`` creates the month's partition
(the retention job calls it to stay ahead); it moves any rows of that month out of the default
partition first, so it never fails on them.

SQLite keeps the plain table and only gets the wider listing indexes.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

from cdrkit.db import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Months created ahead at migration time; the retention job keeps PARSER_PARTITION_MONTHS_AHEAD.
MONTHS_AHEAD = 3

COLUMNS = (
    "call_id, schema_version, source, origin_host, leg, other_leg_id, direction, caller_number, "
    "caller_name, callee_number, account, tenant, carrier, start_time, answer_time, end_time, "
    "duration_s, billsec_s, disposition, hangup_cause, sip_code, pdd_ms, recording_path, codec, "
    "extra, received_at, stored_at"
)

LISTING_INDEXES = {
    "ix_cdrs_account_start_time": ["account", "start_time", "call_id"],
    "ix_cdrs_caller_number": ["caller_number", "start_time", "call_id"],
    "ix_cdrs_callee_number": ["callee_number", "start_time", "call_id"],
    "ix_cdrs_disposition": ["disposition", "start_time", "call_id"],
}

ENSURE_PARTITION = """
CREATE OR REPLACE FUNCTION cdrs_ensure_partition(at timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    month timestamp := date_trunc('month', at AT TIME ZONE 'UTC');
    lo text := to_char(month, 'YYYY-MM-DD') || ' 00:00:00+00';
    hi text := to_char(month + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00';
    part text := 'cdrs_p' || to_char(month, 'YYYYMM');
BEGIN
    -- Serialises parser replicas running the job at the same moment.
    PERFORM pg_advisory_xact_lock(hashtext('cdrs_ensure_partition'));
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- Create, fill from the default partition, then attach: ATTACH takes only a SHARE UPDATE
    -- EXCLUSIVE lock on cdrs (CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE), and
    -- the CHECK constraint spares it the validation scan of the new partition.
    EXECUTE format(
        'CREATE TABLE %I (LIKE cdrs, CONSTRAINT %I CHECK '
        '(start_time IS NOT NULL AND start_time >= %L AND start_time < %L))',
        part, part || '_bounds', lo, hi);
    EXECUTE format(
        'WITH moved AS (DELETE FROM cdrs_default WHERE start_time >= %L AND start_time < %L '
        'RETURNING *) INSERT INTO %I SELECT * FROM moved', lo, hi, part);
    EXECUTE format('ALTER TABLE cdrs ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   part, lo, hi);
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, part || '_bounds');
    RETURN true;
END
$$
"""


def _cdr_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("call_id", sa.String(128), nullable=False),
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
    ]


def upgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("retry_count", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_failed_at", UtcDateTime))
    op.execute("UPDATE dead_letters SET last_failed_at = created_at")

    if op.get_bind().dialect.name != "postgresql":
        for name, cols in LISTING_INDEXES.items():
            if name != "ix_cdrs_disposition":
                op.drop_index(name, "cdrs")
            op.create_index(name, "cdrs", cols)
        return

    op.execute("ALTER TABLE cdrs RENAME TO cdrs_unpartitioned")
    op.execute("ALTER TABLE cdrs_unpartitioned DROP CONSTRAINT cdrs_pkey")
    for name in ("ix_cdrs_start_time", *LISTING_INDEXES):
        op.execute(f"DROP INDEX IF EXISTS {name}")

    op.create_table(
        "cdrs",
        *_cdr_columns(),
        # (start_time, call_id) is also the keyset order of GET /v1/cdrs, newest first.
        sa.PrimaryKeyConstraint("start_time", "call_id", name="cdrs_pkey"),
        postgresql_partition_by="RANGE (start_time)",
    )
    for name, cols in LISTING_INDEXES.items():
        op.create_index(name, "cdrs", cols)
    op.execute("CREATE TABLE cdrs_default PARTITION OF cdrs DEFAULT")
    op.execute(ENSURE_PARTITION)
    op.execute(
        f"""
        SELECT cdrs_ensure_partition(m) FROM (
            SELECT DISTINCT date_trunc('month', start_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                AS m FROM cdrs_unpartitioned
            UNION
            SELECT now() + make_interval(months => n) FROM generate_series(0, {MONTHS_AHEAD}) n
        ) months ORDER BY m
        """
    )
    op.execute(f"INSERT INTO cdrs ({COLUMNS}) SELECT {COLUMNS} FROM cdrs_unpartitioned")

    op.create_table(
        "cdr_keys",
        sa.Column("call_id", sa.String(128), primary_key=True),
        sa.Column("start_time", UtcDateTime, nullable=False),
    )
    op.execute("INSERT INTO cdr_keys (call_id, start_time) SELECT call_id, start_time FROM cdrs")
    op.execute("DROP TABLE cdrs_unpartitioned")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE cdrs RENAME TO cdrs_partitioned")
        op.execute("ALTER TABLE cdrs_partitioned DROP CONSTRAINT cdrs_pkey")
        for name in LISTING_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
        op.create_table("cdrs", *_cdr_columns(), sa.PrimaryKeyConstraint("call_id"))
        op.execute(f"INSERT INTO cdrs ({COLUMNS}) SELECT {COLUMNS} FROM cdrs_partitioned")
        op.execute("DROP TABLE cdrs_partitioned CASCADE")
        op.execute("DROP TABLE cdr_keys")
        op.execute("DROP FUNCTION cdrs_ensure_partition(timestamptz)")
        op.create_index("ix_cdrs_start_time", "cdrs", ["start_time", "call_id"])
        op.create_index("ix_cdrs_account_start_time", "cdrs", ["account", "start_time"])
        op.create_index("ix_cdrs_caller_number", "cdrs", ["caller_number"])
        op.create_index("ix_cdrs_callee_number", "cdrs", ["callee_number"])
    else:
        for name in LISTING_INDEXES:
            op.drop_index(name, "cdrs")
        op.create_index("ix_cdrs_account_start_time", "cdrs", ["account", "start_time"])
        op.create_index("ix_cdrs_caller_number", "cdrs", ["caller_number"])
        op.create_index("ix_cdrs_callee_number", "cdrs", ["callee_number"])
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("last_failed_at")
        batch.drop_column("retry_count")

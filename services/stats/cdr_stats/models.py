"""The stats service's tables: 6-minute bucket moments, call-id dedup keys and alerts.

``stats_buckets`` holds one row per (dimension, bucket, value, metric) with the moments count,
sum, sum of squares, min and max. Every instance writes *additive deltas* into it
(``ON CONFLICT … DO UPDATE SET count = count + excluded.count, …``), so several instances (one
per partition set) merge in the database. ``stats_seen`` makes counting idempotent on the call id.
"""

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from cdrkit.db import UtcDateTime

metadata = MetaData()

buckets = Table(
    "stats_buckets",
    metadata,
    # dim first: every query reads one dimension over a range of buckets.
    Column("dim", String(16), primary_key=True),
    Column("bucket", BigInteger, primary_key=True, autoincrement=False),
    Column("value", String(255), primary_key=True),
    Column("metric", String(160), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("sum", Float, nullable=False),
    Column("squares", Float, nullable=False),
    Column("min", Float),
    Column("max", Float),
    Index("ix_stats_buckets_bucket", "bucket"),
    # Room for HOT updates of the rows every batch adds to (migration 0002).
    postgresql_with={"fillfactor": 50},
)

seen = Table(
    "stats_seen",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("bucket", BigInteger, nullable=False),
    Index("ix_stats_seen_bucket", "bucket"),
)

alerts = Table(
    "stats_alerts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("dedup_key", String(64), nullable=False, unique=True),
    Column("kind", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("bucket", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_stats_alerts_created_at", "created_at"),
)

"""The parser owns the CDR store: normalised CDRs, raw payloads (retention) and dead letters.

On PostgreSQL ``cdrs`` is range-partitioned by month on ``start_time`` (migration 0002), so its
primary key there is ``(start_time, call_id)``: a partitioned table cannot have a unique index on
``call_id`` alone. ``cdr_keys`` carries that uniqueness instead, and tells a lookup by call id which
partition to read. SQLite keeps the plain table with ``call_id`` as its key and no ``cdr_keys``.
"""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

from cdrkit.db import UtcDateTime

metadata = MetaData()

cdrs = Table(
    "cdrs",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("schema_version", SmallInteger, nullable=False),
    Column("source", String(32), nullable=False),
    Column("origin_host", String(255)),
    Column("leg", String(1)),
    Column("other_leg_id", String(128)),
    Column("direction", String(16)),
    Column("caller_number", String(64)),
    Column("caller_name", String(255)),
    Column("callee_number", String(64)),
    Column("account", String(128)),
    Column("tenant", String(255)),
    Column("carrier", String(128)),
    Column("start_time", UtcDateTime, nullable=False),
    Column("answer_time", UtcDateTime),
    Column("end_time", UtcDateTime),
    Column("duration_s", Integer),
    Column("billsec_s", Integer),
    Column("disposition", String(16)),
    Column("hangup_cause", String(64)),
    Column("sip_code", SmallInteger),
    Column("pdd_ms", Integer),
    Column("recording_path", Text),
    Column("codec", String(32)),
    Column("extra", JSON, nullable=False),
    Column("received_at", UtcDateTime),
    Column("stored_at", UtcDateTime, nullable=False),
    # Every listing index ends in (start_time, call_id), the keyset order of GET /v1/cdrs.
    Index("ix_cdrs_start_time", "start_time", "call_id"),
    Index("ix_cdrs_account_start_time", "account", "start_time", "call_id"),
    Index("ix_cdrs_caller_number", "caller_number", "start_time", "call_id"),
    Index("ix_cdrs_callee_number", "callee_number", "start_time", "call_id"),
    Index("ix_cdrs_disposition", "disposition", "start_time", "call_id"),
    Index("ix_cdrs_source", "source", "start_time", "call_id"),
    Index("ix_cdrs_carrier", "carrier", "start_time", "call_id"),
    Index("ix_cdrs_tenant", "tenant", "start_time", "call_id"),
    Index("ix_cdrs_direction", "direction", "start_time", "call_id"),
)

raw_payloads = Table(
    "raw_payloads",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("envelope_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("content_type", String(128), nullable=False),
    Column("sha256", String(64)),
    # Rows stored before migration 0008 hold the text in ``payload``; since then the store
    # writes it lz4-compressed to ``payload_lz4`` (``cdr_parser.rows.pack_raw``). Readers take
    # whichever is set (``cdr_parser.rows.stored_payload``).
    Column("payload", Text),
    Column("payload_lz4", LargeBinary),
    Column("payload_ref", Text),
    Column("received_at", UtcDateTime, nullable=False),
    Column("stored_at", UtcDateTime, nullable=False),
    Index("ix_raw_payloads_received_at", "received_at"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    # Redelivery of the same message must not add a second row: the envelope id when the
    # message could be decoded, else topic/partition/offset.
    Column("dedup_key", String(200), nullable=False, unique=True),
    Column("envelope_id", String(64)),
    Column("call_id", String(128)),
    Column("stage", String(32), nullable=False),
    Column("error", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("topic", String(255)),
    Column("partition", Integer),
    Column("offset", BigInteger),
    Column("envelope", JSON),
    Column("raw_value", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("retried_at", UtcDateTime),
    # Set by POST /v1/dead-letters/{id}/retry; a retry that fails again refreshes the reason and
    # last_failed_at, so last_failed_at < retried_at means the last retry went through.
    Column("retry_count", Integer, nullable=False, server_default="0"),
    Column("last_failed_at", UtcDateTime),
    Index("ix_dead_letters_created_at", "created_at"),
)

# PostgreSQL only: one row per stored call, the store's idempotency key (see the module doc).
cdr_keys = Table(
    "cdr_keys",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("start_time", UtcDateTime, nullable=False),
)

# Call start/end pairing state (migration 0003): one row per half, kept once paired (paired_at
# set) so a late duplicate is recognised as one; pending rows are GET /v1/events/pending.
call_event_halves = Table(
    "call_event_halves",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("type", String(8), primary_key=True),  # start | end
    Column("event_id", String(128), nullable=False),
    Column("event_time", UtcDateTime, nullable=False),
    Column("source", String(32)),
    Column("destination", String(32)),
    Column("digest", String(64), nullable=False),
    Column("envelope_id", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("stored_at", UtcDateTime, nullable=False),
    Column("paired_at", UtcDateTime),
    Index(
        "ix_call_event_halves_pending",
        "received_at",
        postgresql_where=text("paired_at IS NULL"),
        sqlite_where=text("paired_at IS NULL"),
    ),
)

# Pexip Infinity conference instances (migration 0005): history conference records, and the
# conference_ended events of the event sink (id "sink-…", since the sink never sends the
# history id). Idempotent on conference_id: the first version stored wins, as for CDRs.
pexip_conferences = Table(
    "pexip_conferences",
    metadata,
    Column("conference_id", String(128), primary_key=True),
    Column("name", String(255)),
    Column("service_type", String(32)),
    Column("tag", String(255)),
    Column("start_time", UtcDateTime),
    Column("end_time", UtcDateTime),
    Column("duration_s", Integer),
    Column("participant_count", Integer),
    Column("participant_ids", JSON, nullable=False),
    Column("feed", String(16), nullable=False),  # history | event_sink
    Column("stored_at", UtcDateTime, nullable=False),
    Index("ix_pexip_conferences_end_time", "end_time", "conference_id"),
)

# Which conference a Pexip participant (a CDR's call id) belongs to: from the participant's own
# record (history) and from the conference's participant list (so event-sink CDRs, which carry no
# conference id, are linked once the conference's history arrives). GET /v1/cdrs?conference=.
pexip_participant_links = Table(
    "pexip_participant_links",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("conference_id", String(128), nullable=False),
    Index("ix_pexip_participant_links_conference", "conference_id", "call_id"),
)

# Edge agents' check-ins (migration 0006): one row per device, the newest check-in wins.
edge_devices = Table(
    "edge_devices",
    metadata,
    Column("device", String(64), primary_key=True),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    Column("version", String(64)),
    Column("source", String(32)),
    Column("source_state", String(16)),
    Column("source_error", String(500)),
    Column("last_line_at", UtcDateTime),
    Column("pbx_timezone", String(64)),
    Column("queue_depth", BigInteger),
    Column("queue_full", Boolean),
    Column("oldest_age_s", Float),
    Column("rejected", BigInteger),
    Column("uptime_s", Float),
    Column("checkin_interval_s", Float),
    Column("remote_addr", String(64)),
)

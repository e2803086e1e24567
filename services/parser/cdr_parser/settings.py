from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from cdrkit.settings import ServiceSettings


class ParserSettings(ServiceSettings):
    """``PARSER_*`` settings plus the common ``CDRFLOW_*`` ones."""

    model_config = SettingsConfigDict(
        env_prefix="PARSER_", frozen=True, extra="ignore", populate_by_name=True
    )

    # Kafka consumer group on cdr.raw, and the most messages handled as one batch.
    consumer_group: str = "parser"
    batch_size: int = Field(default=500, ge=1, le=10_000)
    # Parse a batch's FreeSWITCH XML documents in a worker thread, beside the event loop
    # (libxml2 releases the GIL while it parses). `cdrflow run` turns it on unless this is set:
    # there the one loop bounds the process. Off for the parser alone, where it only adds CPU.
    parse_in_thread: bool = False
    # A flood of dead letters stops the consumer (and turns /readyz red) instead of draining the
    # topic into the dead-letter table: stop once this share of the last `flood_window` messages
    # was dead-lettered.
    flood_window: int = Field(default=500, ge=10)
    flood_ratio: float = Field(default=0.9, gt=0, le=1)
    # POST /v1/dead-letters/{id}/retry: at most `retry_rate_per_s` a second on average, bursts
    # of `retry_burst` (beyond: 429 with Retry-After); a retry stays pending (a second one is a
    # 409) until the parser has processed it or for `retry_pending_s`.
    retry_rate_per_s: float = Field(default=5, gt=0, le=10_000)
    retry_burst: int = Field(default=50, ge=1, le=100_000)
    retry_pending_s: float = Field(default=60, ge=0, le=86_400)
    # Retention: raw payloads older than this are purged (the normalised CDRs stay), by a job
    # that runs every `retention_interval_s` (first run soon after start) in chunks of
    # `retention_chunk_rows` rows, and keeps PostgreSQL's monthly CDR partitions
    # `partition_months_ahead` months ahead.
    raw_retention_days: float = Field(default=7, gt=0)
    retention_interval_s: float = Field(default=3600, gt=0)
    retention_chunk_rows: int = Field(default=5000, ge=1, le=100_000)
    partition_months_ahead: int = Field(default=3, ge=1, le=24)

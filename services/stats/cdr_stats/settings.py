from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from cdrkit.settings import ServiceSettings

Dimension = Literal["carrier", "account", "direction", "tenant"]


class Rule(BaseModel):
    """A threshold rule, evaluated per bucket and dimension value on the merged totals: it fires
    once per (bucket, dimension value) when ``measure`` is ``above``/``below`` ``threshold`` and
    the bucket holds at least ``min_attempts`` calls."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    measure: Literal["zero_duration_ratio", "asr", "sip_5xx_share"]
    op: Literal["above", "below"]
    threshold: float = Field(ge=0, le=1)
    min_attempts: int = Field(default=20, ge=1)
    dimensions: tuple[Dimension, ...] = ("carrier",)


DEFAULT_RULES = (
    Rule(name="zero_duration_burst", measure="zero_duration_ratio", op="above", threshold=0.6),
    Rule(name="low_asr", measure="asr", op="below", threshold=0.2),
    Rule(name="sip_5xx", measure="sip_5xx_share", op="above", threshold=0.3),
)


class StatsSettings(ServiceSettings):
    """``STATS_*`` settings plus the common ``CDRFLOW_*`` ones."""

    model_config = SettingsConfigDict(
        env_prefix="STATS_", frozen=True, extra="ignore", populate_by_name=True
    )

    # Kafka consumer group on cdr.normalized, and the most messages handled as one batch.
    consumer_group: str = "stats"
    # Large batches amortise the per-batch database round trips (one transaction per batch).
    batch_size: int = Field(default=5000, ge=1, le=20_000)
    # Buckets (and the dedup keys of their calls) older than this are pruned; CDRs that end
    # before it are not counted (a replay of old CDRs does not resurrect pruned buckets).
    retention_hours: float = Field(default=24, gt=0)
    prune_interval_s: float = Field(default=300, gt=0)
    alert_retention_hours: float = Field(default=168, gt=0)
    # Built-in plugins to run (any of totals, unexpected_sip, fraud_prefixes), as a JSON list.
    builtin_plugins: tuple[str, ...] = ("totals", "unexpected_sip", "fraud_prefixes")
    # Load third-party plugins from the `cdrflow.stats_plugins` entry-point group.
    entry_point_plugins: bool = True
    # SIP codes the unexpected_sip plugin does not report (a JSON list).
    expected_sip_codes: frozenset[int] = frozenset({200, 404, 486, 487})
    # JSON file of prefix lists ({"alert10": ["1787555", …], …}: a call to a listed prefix
    # billed at least N seconds raises a fraud alert); unset: the fraud plugin has no lists.
    fraud_prefix_file: Path | None = None
    # Threshold alert rules, a JSON list of {name, measure, op, threshold, min_attempts,
    # dimensions} (default: zero_duration_burst, low_asr, sip_5xx).
    rules: tuple[Rule, ...] = DEFAULT_RULES
    # Live feed (GET /v1/live): changed buckets are pushed at most every `live_interval_s`;
    # each client's queue holds at most `live_queue_size` events (a slow client loses events,
    # is told so, and never grows the server's memory); a comment every `keepalive_s`.
    live_interval_s: float = Field(default=1.0, gt=0)
    live_queue_size: int = Field(default=256, ge=1, le=100_000)
    keepalive_s: float = Field(default=15, gt=0)
    # Prometheus gauges of the current bucket are exported for this many carriers (most
    # attempts first), which bounds the label cardinality.
    top_carriers: int = Field(default=10, ge=1, le=200)

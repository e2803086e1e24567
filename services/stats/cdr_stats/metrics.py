from prometheus_client import Counter, Gauge

CDRS = Counter(
    "cdrflow_stats_cdrs_total",
    "Consumed normalised CDRs by outcome.",
    ["outcome"],  # counted | duplicate | expired | invalid
)
ALERTS = Counter(
    "cdrflow_stats_alerts_total",
    "Alerts stored (after deduplication), by kind.",
    ["kind"],  # rule | unexpected_sip_code | fraud_prefix | a third-party plugin's kinds
)
PLUGIN_ERRORS = Counter(
    "cdrflow_stats_plugin_errors_total",
    "Calls a plugin raised an exception on (the call is still counted).",
    ["plugin"],
)
LIVE_CLIENTS = Gauge("cdrflow_stats_live_clients", "Clients connected to GET /v1/live.")
LIVE_DROPPED = Counter(
    "cdrflow_stats_live_dropped_events_total",
    "Live events dropped because a client's queue was full (a slow client).",
)
PRUNED_ROWS = Counter(
    "cdrflow_stats_pruned_rows_total", "Bucket rows deleted after the retention period."
)
# The current bucket, per carrier, for the top STATS_TOP_CARRIERS carriers by attempts.
BUCKET_ASR = Gauge(
    "cdrflow_stats_bucket_asr_ratio",
    "Answer-seizure ratio of the current 6-minute bucket.",
    ["carrier"],
)
BUCKET_ACD = Gauge(
    "cdrflow_stats_bucket_acd_seconds",
    "Average call duration (billed seconds per answered call) of the current 6-minute bucket.",
    ["carrier"],
)
BUCKET_ZERO = Gauge(
    "cdrflow_stats_bucket_zero_duration_ratio",
    "Share of calls with no billed second in the current 6-minute bucket.",
    ["carrier"],
)
BUCKET_ATTEMPTS = Gauge(
    "cdrflow_stats_bucket_attempts",
    "Call attempts in the current 6-minute bucket.",
    ["carrier"],
)

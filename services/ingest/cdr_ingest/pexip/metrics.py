from prometheus_client import Counter, Gauge

PEXIP_REQUESTS = Counter(
    "cdrflow_pexip_requests_total",
    "History API requests to the Management Node, by resource and HTTP status (error: no answer).",
    ["resource", "status"],
)
PEXIP_RETRIES = Counter(
    "cdrflow_pexip_retries_total",
    "History API requests retried (429, 5xx, connection errors), by resource.",
    ["resource"],
)
PEXIP_RECORDS = Counter(
    "cdrflow_pexip_records_total",
    "History records pulled, by type and outcome (new: first time in this pull; duplicate: "
    "seen already in this pull; rejected: unusable, logged with the reason).",
    ["type", "outcome"],
)
PEXIP_PULLS = Counter(
    "cdrflow_pexip_pulls_total",
    "Pulls, by result (ok, failed, auth_failed).",
    ["result"],
)
PEXIP_RETENTION_GAP = Counter(
    "cdrflow_pexip_retention_gap_warnings_total",
    "Pulls whose gap since the last good pull may have outrun Pexip's history retention.",
)
PEXIP_CHECKPOINT = Gauge(
    "cdrflow_pexip_checkpoint_seconds",
    "The checkpoint (highest end_time pulled), epoch seconds.",
)
PEXIP_LAST_SUCCESS = Gauge(
    "cdrflow_pexip_last_success_seconds",
    "When the last pull succeeded, epoch seconds.",
)
SINK_EVENTS = Counter(
    "cdrflow_ingest_pexip_events_total",
    "Pexip event-sink messages posted to /v1/pexip/events, by outcome (accepted: durable; "
    "ignored: an event that ends nothing; rejected: invalid).",
    ["outcome"],
)
HISTORY_RECORDS = Counter(
    "cdrflow_ingest_pexip_history_total",
    "Pexip history records posted to /v1/pexip/history, by type and outcome.",
    ["type", "outcome"],
)

from prometheus_client import Counter, Gauge, Histogram

CDRS = Counter(
    "cdrflow_parser_cdrs_total",
    "Consumed raw CDRs by outcome.",
    ["outcome"],  # stored | duplicate | dead_letter
)
DEAD_LETTERS = Counter(
    "cdrflow_parser_dead_letters_total",
    "Records sent to the dead letters, by error code.",
    ["reason"],
)
MAP_SECONDS = Histogram(
    "cdrflow_parser_map_seconds",
    "Time to parse and map one document.",
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1),
)
FETCHED_BYTES = Counter(
    "cdrflow_parser_claim_check_bytes_total",
    "Bytes of claim-checked payloads fetched from the object store.",
)
RAW_PURGED = Counter(
    "cdrflow_parser_raw_purged_total",
    "Raw payloads purged after the raw retention period.",
)
RETENTION_RUNS = Counter(
    "cdrflow_parser_retention_runs_total",
    "Runs of the retention job (raw purge and partition upkeep), by outcome.",
    ["outcome"],  # ok | failed
)
DEAD_LETTER_RETRIES = Counter(
    "cdrflow_parser_dead_letter_retries_total",
    "Dead letters re-published to cdr.raw by POST /v1/dead-letters/{id}/retry.",
)
EVENT_HALVES = Counter(
    "cdrflow_parser_call_event_halves_total",
    "Call start/end halves consumed, by outcome.",
    ["outcome"],  # waiting | paired | duplicate | rejected
)
# Edge agents, from the device registry (cdr_parser.devices); one series per device.
EDGE_DEVICE_QUEUE_DEPTH = Gauge(
    "cdrflow_edge_device_queue_depth",
    "Lines queued on an edge agent, as of its last check-in.",
    ["device"],
)
EDGE_DEVICE_OLDEST_AGE = Gauge(
    "cdrflow_edge_device_oldest_age_seconds",
    "Age of the oldest line queued on an edge agent, as of its last check-in.",
    ["device"],
)
EDGE_DEVICE_STALE = Gauge(
    "cdrflow_edge_device_stale",
    "1 when an edge agent missed two check-ins.",
    ["device"],
)

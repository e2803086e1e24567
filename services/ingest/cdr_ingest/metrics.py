from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "cdrflow_ingest_requests_total",
    "CDR posts by HTTP status and payload kind.",
    ["status", "kind"],
)
REQUEST_SECONDS = Histogram(
    "cdrflow_ingest_request_seconds",
    "Time from request to answer for CDR posts (includes the bus acknowledgement).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BODY_BYTES = Histogram(
    "cdrflow_ingest_body_bytes",
    "Size of accepted CDR documents.",
    buckets=(1e3, 4e3, 16e3, 64e3, 256e3, 1e6, 4e6, 16e6, 64e6),
)
BUS_ERRORS = Counter(
    "cdrflow_ingest_bus_errors_total",
    "Posts the bus did not acknowledge in time (spooled, or answered 503 without a spool).",
)
SPOOL_DEPTH = Gauge(
    "cdrflow_ingest_spool_depth",
    "Envelopes in the local spool not yet acknowledged by the bus.",
)
SPOOL_BYTES = Gauge(
    "cdrflow_ingest_spool_bytes",
    "Bytes of spool segment files on disk.",
)
SPOOL_OLDEST_AGE = Gauge(
    "cdrflow_ingest_spool_oldest_age_seconds",
    "Age of the oldest envelope waiting in the spool (0 when it is empty).",
)
SPOOLED = Counter(
    "cdrflow_ingest_spooled_total",
    "Envelopes written (fsync'd) to the spool because the bus did not acknowledge in time.",
)
SPOOL_DRAINED = Counter(
    "cdrflow_ingest_spool_drained_total",
    "Spooled envelopes the bus acknowledged (shipped by the drainer).",
)
CLAIM_CHECKS = Counter(
    "cdrflow_ingest_claim_checks_total",
    "Posts whose payload was written to the object store and published as a payload_ref.",
)
CLAIM_CHECK_BYTES = Counter(
    "cdrflow_ingest_claim_check_bytes_total",
    "Payload bytes written to the object store for claim checks.",
)
AUTH_REJECTIONS = Counter(
    "cdrflow_ingest_auth_rejections_total",
    "Posts refused with 401, by reason (missing, malformed, invalid credentials).",
    ["reason"],
)
DUPLICATES = Counter(
    "cdrflow_ingest_duplicates_total",
    "Posts answered duplicate: the same call id and bytes were accepted recently (not published).",
)
EVENTS = Counter(
    "cdrflow_ingest_events_total",
    "Call start/end records posted to /v1/events, by outcome (accepted: durable; rejected: "
    "invalid, answered with a reason).",
    ["outcome"],  # accepted | rejected
)
EDGE_LINES = Counter(
    "cdrflow_ingest_edge_lines_total",
    "Lines from edge agents by outcome (accepted, duplicate, rejected).",
    ["outcome"],
)

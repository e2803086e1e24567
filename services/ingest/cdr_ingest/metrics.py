from prometheus_client import Counter, Histogram

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
    "Posts the bus did not acknowledge in time (answered 503).",
)
DUPLICATES = Counter(
    "cdrflow_ingest_duplicates_total",
    "Posts answered duplicate: the same call id and bytes were accepted recently (not published).",
)

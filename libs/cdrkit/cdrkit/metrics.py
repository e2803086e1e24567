"""Metrics shared by every service (consume loops); each service declares its own too."""

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter(
    "cdrflow_bus_consumed_messages_total",
    "Messages handed to a consume loop's handler.",
    ["group", "topic"],
)
COMMITS = Counter(
    "cdrflow_bus_commits_total",
    "Offset commits by outcome.",
    ["group", "outcome"],
)
BATCH_SECONDS = Histogram(
    "cdrflow_bus_batch_seconds",
    "Time to make one consumed batch durable (handler + commit).",
    ["group"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RETRIES = Counter(
    "cdrflow_bus_handler_retries_total",
    "Batches retried after a transient failure (database or broker unavailable).",
    ["group"],
)
STOPPED = Gauge(
    "cdrflow_bus_consumer_stopped",
    "1 when a consume loop has stopped on a fatal error (see /readyz).",
    ["group"],
)
LAG = Gauge(
    "cdrflow_bus_consumer_lag_messages",
    "Messages on the partitions this instance owns that it has not fetched yet (summed over "
    "its partitions of the topic; sum over instances for the group's lag).",
    ["group", "topic"],
)
POISON = Counter(
    "cdrflow_bus_poison_messages_total",
    "Messages that failed on their own, every time, and were dead-lettered (poison isolation).",
    ["group"],
)

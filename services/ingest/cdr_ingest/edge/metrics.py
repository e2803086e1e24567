"""The agent's own metrics, served on ``EDGE_METRICS_PORT`` when it is set (off by default).

Ingest also exposes every device's queue depth from its check-ins
(``cdrflow_edge_device_queue_depth{device}``), so a site without a scraper near the PBX is still
watched.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry(auto_describe=True)

QUEUE_DEPTH = Gauge(
    "cdrflow_edge_queue_depth_lines", "Lines captured and not yet delivered", registry=REGISTRY
)
QUEUE_FULL = Gauge(
    "cdrflow_edge_queue_full",
    "1 while the queue is full and the source is not read (EDGE_QUEUE_SIZE)",
    registry=REGISTRY,
)
CAPTURED = Counter("cdrflow_edge_lines_captured_total", "Lines committed", registry=REGISTRY)
DELIVERED = Counter(
    "cdrflow_edge_lines_delivered_total", "Lines ingest accepted (2xx)", registry=REGISTRY
)
REJECTED = Counter(
    "cdrflow_edge_lines_rejected_total", "Lines ingest refused (4xx)", registry=REGISTRY
)
DELIVERY_FAILURES = Counter(
    "cdrflow_edge_delivery_failures_total", "Batches that must be retried", registry=REGISTRY
)

"""The services this process can run, and the all-in-one app that runs them together."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI

from cdr_billing.app import spec as billing_spec
from cdr_billing.settings import BillingSettings
from cdr_ingest.app import spec as ingest_spec
from cdr_ingest.settings import IngestSettings
from cdr_parser.app import spec as parser_spec
from cdr_parser.settings import ParserSettings
from cdr_recordings.app import spec as recordings_spec
from cdr_recordings.settings import RecordingsSettings
from cdr_stats.app import spec as stats_spec
from cdr_stats.settings import StatsSettings
from cdrflow.console import ConsoleSettings
from cdrflow.console import spec as console_spec
from cdrkit.app import ServiceSpec, create_app
from cdrkit.settings import ServiceSettings, load


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    settings: type[ServiceSettings]
    spec: Callable[..., ServiceSpec]


SERVICES: dict[str, Service] = {
    "ingest": Service("ingest", 8001, IngestSettings, ingest_spec),
    "parser": Service("parser", 8002, ParserSettings, parser_spec),
    "billing": Service("billing", 8003, BillingSettings, billing_spec),
    "stats": Service("stats", 8004, StatsSettings, stats_spec),
    "recordings": Service("recordings", 8005, RecordingsSettings, recordings_spec),
    # The operator console's pages alone (the all-in-one serves them at / too).
    "console": Service("console", 8006, ConsoleSettings, console_spec),
}


def service_spec(name: str, **overrides: object) -> tuple[ServiceSettings, ServiceSpec]:
    """The service's settings (environment, then ``overrides``) and its spec."""
    svc = SERVICES[name]
    settings = load(svc.settings, **overrides)
    return settings, svc.spec(settings)


def create_service_app(name: str, **overrides: object) -> FastAPI:
    settings, spec = service_spec(name, **overrides)
    return create_app(f"cdrflow {name}", settings, [spec])


def embedded_overrides() -> dict[str, object]:
    """What ``cdrflow run`` changes in the environment's settings: a ``memory://`` bus keeps its
    log in the data dir (``<data dir>/bus``), so a message acknowledged to a switch survives a
    crash of the one process, as on Kafka (docs/reliability.md); and the topics it creates have
    one partition unless the URL says ``partitions``: every group has a single member in one
    process, so more partitions parallelise nothing and only multiply the files each group
    commit of the log fsyncs (docs/performance.md, fourth round). Topics already in the log keep
    the partitions they were created with. And the parser parses its batches' XML documents in a
    worker thread (``PARSER_PARSE_IN_THREAD``, unless the environment sets it): libxml2 releases
    the GIL, so the one process uses a second core for it (docs/performance.md, seventh
    round)."""
    import os

    from cdrkit.bus.memory_broker import durable_url

    common = load(ServiceSettings)
    url = durable_url(common.bus_url, common.data_dir / "bus")
    parts = urlsplit(url)
    if parts.scheme == "memory" and "partitions" not in parse_qs(parts.query):
        url += ("&" if parts.query else "?") + "partitions=1"
    overrides: dict[str, object] = {} if url == common.bus_url else {"bus_url": url}
    if "PARSER_PARSE_IN_THREAD" not in os.environ:
        overrides["parse_in_thread"] = True
    return overrides


def create_allinone_app(extra: list[ServiceSpec] | None = None, **overrides: object) -> FastAPI:
    """Every service's routes and consumers in one process and one event loop."""
    specs = [service_spec(name, **overrides)[1] for name in SERVICES]
    common = load(ServiceSettings, **overrides)
    return create_app("cdrflow", common, specs + list(extra or []))

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from cdr_parser.api import router
from cdr_parser.conferences_api import router as conferences_router
from cdr_parser.devices import refresh_forever
from cdr_parser.edge_api import router as edge_router
from cdr_parser.repository import CdrRepository
from cdr_parser.retention import RetentionJob
from cdr_parser.service import ParserService
from cdr_parser.settings import ParserSettings
from cdrkit.app import Runtime, ServiceSpec
from cdrkit.app import create_app as _create_app
from cdrkit.bus.runner import ConsumeLoop, background, consuming
from cdrkit.malloc import keep_large_blocks
from cdrkit.objects import open_object_store
from cdrkit.settings import load
from cdrmodel import topics


@dataclass
class ParserComponent:
    service: ParserService
    loop: ConsumeLoop
    retention: RetentionJob | None = None

    def ready(self) -> str | None:
        return self.loop.ready()


def spec(settings: ParserSettings) -> ServiceSpec:
    @asynccontextmanager
    async def start(runtime: Runtime) -> AsyncIterator[ParserComponent]:
        # Each batch's store statement is megabytes (the raw payloads): keep such blocks on the
        # heap instead of faulting them in afresh every batch (cdrkit.malloc).
        keep_large_blocks()
        repo = CdrRepository(runtime.sessions, runtime.engine.dialect.name)
        await runtime.bus.ensure_topics(topics.ALL)
        async with open_object_store(settings.effective_object_store_url) as store:
            service = ParserService(settings, repo, runtime.bus.producer, store)
            retention = RetentionJob(settings, repo, store)
            async with (
                consuming(
                    runtime.bus,
                    [topics.RAW],
                    settings.consumer_group,
                    service.handle_batch,
                    batch_size=settings.batch_size,
                    hold_dir=settings.fault_hold_dir,
                    on_poison=service.dead_letter_poison,
                ) as loop,
                background(retention.run_forever(), "parser:retention"),
                background(refresh_forever(repo), "parser:edge-gauges"),
            ):
                yield ParserComponent(service, loop, retention)

    return ServiceSpec(
        "parser",
        start,
        [router, conferences_router, edge_router],
        "cdr_parser.migrations",
        # The edge device gauges are the parser's (cdr_parser.devices).
        metric_prefixes=("cdrflow_parser_", "cdrflow_bus_", "cdrflow_edge_device_"),
    )


def create_app(settings: ParserSettings | None = None) -> FastAPI:
    settings = settings or load(ParserSettings)
    return _create_app("cdrflow parser", settings, [spec(settings)])

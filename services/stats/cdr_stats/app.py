from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from cdr_stats.api import router
from cdr_stats.plugins import PluginSet
from cdr_stats.repository import StatsRepository
from cdr_stats.service import StatsService
from cdr_stats.settings import StatsSettings
from cdrkit.app import Runtime, ServiceSpec
from cdrkit.app import create_app as _create_app
from cdrkit.bus.runner import ConsumeLoop, background, consuming
from cdrkit.settings import load
from cdrmodel import topics


@dataclass
class StatsComponent:
    service: StatsService
    loop: ConsumeLoop

    def ready(self) -> str | None:
        return self.loop.ready()


def spec(settings: StatsSettings) -> ServiceSpec:
    @asynccontextmanager
    async def start(runtime: Runtime) -> AsyncIterator[StatsComponent]:
        repo = StatsRepository(runtime.sessions, runtime.engine.dialect.name)
        service = StatsService(settings, repo, PluginSet.load(settings))
        async with (
            consuming(
                runtime.bus,
                [topics.NORMALIZED],
                settings.consumer_group,
                service.handle_batch,
                batch_size=settings.batch_size,
                hold_dir=settings.fault_hold_dir,
            ) as loop,
            background(service.run_publisher(), "stats:live"),
            background(service.run_pruner(), "stats:prune"),
        ):
            try:
                yield StatsComponent(service, loop)
            finally:
                service.hub.close()  # ends the /v1/live streams before the tasks are cancelled

    return ServiceSpec("stats", start, [router], "cdr_stats.migrations")


def create_app(settings: StatsSettings | None = None) -> FastAPI:
    settings = settings or load(StatsSettings)
    return _create_app("cdrflow stats", settings, [spec(settings)])

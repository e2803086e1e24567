from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from cdr_stats.api import router
from cdr_stats.settings import StatsSettings
from cdrkit.app import Runtime, ServiceSpec
from cdrkit.app import create_app as _create_app
from cdrkit.settings import load


@dataclass
class StatsComponent:
    def ready(self) -> str | None:
        return None


def spec(settings: StatsSettings) -> ServiceSpec:
    @asynccontextmanager
    async def start(runtime: Runtime) -> AsyncIterator[StatsComponent]:
        yield StatsComponent()

    return ServiceSpec("stats", start, [router])


def create_app(settings: StatsSettings | None = None) -> FastAPI:
    settings = settings or load(StatsSettings)
    return _create_app("cdrflow stats", settings, [spec(settings)])

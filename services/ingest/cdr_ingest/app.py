from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from cdr_ingest.api import router
from cdr_ingest.auth import log_access_mode
from cdr_ingest.service import IngestService
from cdr_ingest.settings import IngestSettings
from cdrkit.app import Runtime, ServiceSpec
from cdrkit.app import create_app as _create_app
from cdrkit.settings import load
from cdrmodel import topics


@dataclass
class IngestComponent:
    service: IngestService

    def ready(self) -> str | None:
        return None


def spec(settings: IngestSettings) -> ServiceSpec:
    @asynccontextmanager
    async def start(runtime: Runtime) -> AsyncIterator[IngestComponent]:
        log_access_mode(settings)
        await runtime.bus.ensure_topics([topics.RAW])
        yield IngestComponent(IngestService(settings, runtime.bus.producer))

    return ServiceSpec("ingest", start, [router], uses_database=False)


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or load(IngestSettings)
    return _create_app("cdrflow ingest", settings, [spec(settings)])

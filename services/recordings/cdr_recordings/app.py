from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from cdr_recordings.api import router
from cdr_recordings.settings import RecordingsSettings
from cdrkit.app import Runtime, ServiceSpec
from cdrkit.app import create_app as _create_app
from cdrkit.settings import load


@dataclass
class RecordingsComponent:
    def ready(self) -> str | None:
        return None


def spec(settings: RecordingsSettings) -> ServiceSpec:
    @asynccontextmanager
    async def start(runtime: Runtime) -> AsyncIterator[RecordingsComponent]:
        yield RecordingsComponent()

    return ServiceSpec("recordings", start, [router])


def create_app(settings: RecordingsSettings | None = None) -> FastAPI:
    settings = settings or load(RecordingsSettings)
    return _create_app("cdrflow recordings", settings, [spec(settings)])

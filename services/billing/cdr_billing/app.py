from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from cdr_billing.api import router
from cdr_billing.repository import BillingRepository
from cdr_billing.service import BillingService
from cdr_billing.settings import BillingSettings
from cdrkit.app import Runtime, ServiceSpec
from cdrkit.app import create_app as _create_app
from cdrkit.bus.runner import ConsumeLoop, consuming
from cdrkit.settings import load
from cdrmodel import topics


@dataclass
class BillingComponent:
    service: BillingService
    loop: ConsumeLoop

    def ready(self) -> str | None:
        return self.loop.ready()


def spec(settings: BillingSettings) -> ServiceSpec:
    @asynccontextmanager
    async def start(runtime: Runtime) -> AsyncIterator[BillingComponent]:
        repo = BillingRepository(runtime.sessions, runtime.engine.dialect.name)
        await runtime.bus.ensure_topics(topics.ALL)
        service = BillingService(settings, repo, runtime.bus.producer)
        await service.ensure_default_tariff()
        await service.refresh_tariffs()
        async with consuming(
            runtime.bus,
            [topics.NORMALIZED],
            settings.consumer_group,
            service.handle_batch,
            batch_size=settings.batch_size,
            hold_dir=settings.fault_hold_dir,
        ) as loop:
            yield BillingComponent(service, loop)

    return ServiceSpec("billing", start, [router], "cdr_billing.migrations")


def create_app(settings: BillingSettings | None = None) -> FastAPI:
    settings = settings or load(BillingSettings)
    return _create_app("cdrflow billing", settings, [spec(settings)])

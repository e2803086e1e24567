from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from cdr_billing.api import router
from cdr_billing.settings import BillingSettings
from cdrkit.app import Runtime, ServiceSpec
from cdrkit.app import create_app as _create_app
from cdrkit.settings import load


@dataclass
class BillingComponent:
    def ready(self) -> str | None:
        return None


def spec(settings: BillingSettings) -> ServiceSpec:
    @asynccontextmanager
    async def start(runtime: Runtime) -> AsyncIterator[BillingComponent]:
        yield BillingComponent()

    return ServiceSpec("billing", start, [router])


def create_app(settings: BillingSettings | None = None) -> FastAPI:
    settings = settings or load(BillingSettings)
    return _create_app("cdrflow billing", settings, [spec(settings)])

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from cdr_ingest.api import post_cdr_request, post_events, router
from cdr_ingest.auth import log_access_mode
from cdr_ingest.edge_api import router as edge_router
from cdr_ingest.hot_path import install as install_hot_path
from cdr_ingest.metrics import SPOOL_BYTES, SPOOL_DEPTH, SPOOL_OLDEST_AGE
from cdr_ingest.pexip.api import router as pexip_router
from cdr_ingest.request_metrics import install as install_request_metrics
from cdr_ingest.service import IngestService
from cdr_ingest.settings import IngestSettings
from cdr_ingest.spool.drainer import Drainer
from cdr_ingest.spool.segment_log import Spool
from cdrkit.app import Runtime, ServiceSpec
from cdrkit.app import create_app as _create_app
from cdrkit.bus import Bus
from cdrkit.bus.runner import background
from cdrkit.objects import open_object_store
from cdrkit.settings import load
from cdrmodel import topics

log = logging.getLogger(__name__)


@dataclass
class IngestComponent:
    service: IngestService
    spool: Spool
    drainer: Drainer

    def ready(self) -> str | None:
        # The bus is not checked: while it is away the spool takes posts (ServiceSpec.bus_required).
        if self.spool.error is not None:
            return f"the spool is not writable ({self.spool.error})"
        if self.spool.full():
            return f"the spool is full ({self.spool.size_bytes} of {self.spool.max_bytes} bytes)"
        if not self.drainer.running:
            return "the spool drainer is not running"
        return None


async def _try_ensure_topics(bus: Bus) -> bool:
    try:
        async with asyncio.timeout(5):
            await bus.ensure_topics([topics.RAW])
    except Exception as exc:
        log.warning("cannot create topic %s yet (%s); ingest spools until it can", topics.RAW, exc)
        return False
    return True


async def _ensure_topics(bus: Bus, retry_max_s: float = 10.0) -> None:
    """Create ``cdr.raw`` once the bus answers; the broker may be down when ingest starts."""
    delay = 0.5
    while not await _try_ensure_topics(bus):
        await asyncio.sleep(delay)
        delay = min(delay * 2, retry_max_s)


async def _close_spool(spool: Spool) -> None:
    await spool.close()
    if spool.depth:
        log.warning(
            "stopping with %d CDRs in the spool %s; they drain at the next start",
            spool.depth,
            spool.directory,
        )


def _install(app: FastAPI) -> None:
    # Before the request metrics: hot_path.install puts its middleware innermost, and the
    # request metrics (outermost) count its answers as any other.
    install_hot_path(app, {"/v1/cdr": post_cdr_request, "/v1/events": post_events})
    install_request_metrics(app, [router, edge_router])


def spec(settings: IngestSettings) -> ServiceSpec:
    @asynccontextmanager
    async def start(runtime: Runtime) -> AsyncIterator[IngestComponent]:
        log_access_mode(settings)
        bus = runtime.bus
        async with AsyncExitStack() as stack:
            # One attempt first (so a first post cannot auto-create the topic with the broker's
            # defaults); with the broker down ingest starts anyway, spools, and keeps trying.
            if not await _try_ensure_topics(bus):
                await stack.enter_async_context(
                    background(_ensure_topics(bus), "ingest-ensure-topics")
                )
            store = await stack.enter_async_context(
                open_object_store(settings.effective_object_store_url)
            )
            spool = await Spool(
                settings.effective_spool_dir, max_bytes=settings.spool_max_bytes
            ).open()
            stack.push_async_callback(_close_spool, spool)
            drainer = Drainer(
                spool,
                bus.producer,
                topics.RAW,
                probe=bus.ping,
                send_timeout_s=settings.publish_timeout_s,
                on_recover=lambda: bus.ensure_topics([topics.RAW]),
            )
            SPOOL_DEPTH.set_function(lambda: spool.depth)
            SPOOL_BYTES.set_function(lambda: spool.size_bytes)
            SPOOL_OLDEST_AGE.set_function(spool.oldest_age_s)
            drainer.start()
            stack.push_async_callback(drainer.stop)
            service = IngestService(settings, bus.producer, store=store, spool=spool)
            service.drainer = drainer
            yield IngestComponent(service, spool, drainer)

    return ServiceSpec(
        "ingest",
        start,
        [router, pexip_router, edge_router],
        uses_database=False,
        bus_required=False,
        metric_prefixes=("cdrflow_ingest_",),
        # Pexip routes count their own answers (cdr_ingest.pexip.api).
        install=_install,
    )


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or load(IngestSettings)
    return _create_app("cdrflow ingest", settings, [spec(settings)])

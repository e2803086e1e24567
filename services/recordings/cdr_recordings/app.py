from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from cdr_recordings.api import router
from cdr_recordings.archive import Archiver
from cdr_recordings.repository import RecordingRepository
from cdr_recordings.s3 import S3Tier
from cdr_recordings.service import RecordingsService
from cdr_recordings.settings import RecordingsSettings
from cdrkit.app import Runtime, ServiceSpec
from cdrkit.app import create_app as _create_app
from cdrkit.bus.runner import ConsumeLoop, background, consuming
from cdrkit.settings import load
from cdrmodel import topics

log = logging.getLogger(__name__)


@dataclass
class RecordingsComponent:
    service: RecordingsService
    loop: ConsumeLoop
    archiver: Archiver | None = None

    def ready(self) -> str | None:
        return self.loop.ready()


def spec(settings: RecordingsSettings) -> ServiceSpec:
    @asynccontextmanager
    async def start(runtime: Runtime) -> AsyncIterator[RecordingsComponent]:
        repo = RecordingRepository(runtime.sessions, runtime.engine.dialect.name)
        await runtime.bus.ensure_topics(topics.ALL)
        async with contextlib.AsyncExitStack() as stack:
            s3: S3Tier | None = None
            if settings.s3_enabled:
                s3 = S3Tier(settings)
                await s3.start()
                stack.push_async_callback(s3.close)
            service = RecordingsService(settings, repo, runtime.bus.producer, s3)
            root = settings.effective_local_root
            if settings.local_root is None:
                # The embedded default under the data dir (`make run`'s ./var/recordings) is
                # made here, as the data dir is. A configured root is the operator's (a mount, a
                # share): never made, only reported while it is missing.
                with contextlib.suppress(OSError):
                    root.mkdir(parents=True, exist_ok=True)
            if not root.is_dir():
                log.warning("recordings: the local root %s is not a directory (yet)", root)
            loop = await stack.enter_async_context(
                consuming(
                    runtime.bus,
                    [topics.NORMALIZED],
                    settings.consumer_group,
                    service.handle_batch,
                    batch_size=settings.batch_size,
                    hold_dir=settings.fault_hold_dir,
                )
            )
            archiver: Archiver | None = None
            if s3 is not None:
                archiver = Archiver(settings, repo, s3)
                await stack.enter_async_context(
                    background(archiver.run_forever(), "recordings:archiver")
                )
            else:
                log.info("recordings: no RECORDINGS_S3_BUCKET, the archiver is off")
            yield RecordingsComponent(service, loop, archiver)

    return ServiceSpec("recordings", start, [router], "cdr_recordings.migrations")


def create_app(settings: RecordingsSettings | None = None) -> FastAPI:
    settings = settings or load(RecordingsSettings)
    return _create_app("cdrflow recordings", settings, [spec(settings)])

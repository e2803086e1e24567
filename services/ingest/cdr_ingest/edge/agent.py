"""The agent: a source, the durable queue, delivery and check-ins in one event loop.

Stop (SIGTERM) cancels the tasks: a line is either committed to the queue or still in the
port's buffer, and a batch whose answer did not arrive stays queued and is sent again (ingest
is idempotent on (device, seq)), so stopping at any moment loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from cdr_ingest.edge import metrics
from cdr_ingest.edge.delivery import Delivery
from cdr_ingest.edge.http import HttpClient, HttpError
from cdr_ingest.edge.identity import device_id
from cdr_ingest.edge.queue import LineQueue
from cdr_ingest.edge.settings import EdgeSettings
from cdr_ingest.edge.sources import Backoff, Source, source_class

log = logging.getLogger(__name__)


def agent_version() -> str:
    try:
        return version("cdr-ingest")
    except PackageNotFoundError:
        return "0+unknown"


class Agent:
    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.device = device_id(settings.data_dir, settings.device_id)
        self.queue = LineQueue(settings.queue_path, max_lines=settings.queue_size)
        self.wake = asyncio.Event()  # new lines for delivery
        self.drained = asyncio.Event()  # room in the queue for the source
        self.source: Source = source_class(settings.source)(settings, self)
        self.client = HttpClient(settings.ingest_url)
        self.delivery = Delivery(
            settings, self.queue, self.device, self.source.name, self.client, self.wake
        )
        self.started = time.monotonic()
        self._paused = False
        metrics.QUEUE_DEPTH.set_function(lambda: self.queue.depth)

    # -- Sink ------------------------------------------------------------------------------
    async def capture(self, lines: list[bytes]) -> None:
        self.queue.append(lines)
        metrics.CAPTURED.inc(len(lines))
        self.wake.set()
        if self.settings.debug:
            for line in lines:
                log.debug("captured %r", line)

    def free(self) -> int:
        return max(0, self.queue.max_lines - self.queue.depth)

    async def room(self) -> None:
        """Return when the queue can take lines. Once full, reading resumes only when a tenth
        of the queue is free again (at least one line), so a long catch-up does not flip
        between paused and reading, and log so, on every delivered batch."""
        if not self.queue.full:
            return
        self._paused = True
        metrics.QUEUE_FULL.set(1)
        log.error(
            "the queue is full (%d lines, EDGE_QUEUE_SIZE): reading from %s is paused until "
            "ingest takes lines again; nothing is dropped",
            self.queue.depth,
            self.source.describe(),
        )
        resume_at = max(1, self.queue.max_lines // 10)
        while self.free() < resume_at:
            self.drained.clear()
            with suppress(TimeoutError):
                async with asyncio.timeout(1.0):  # not wait_for: it can lose a cancel (http.py)
                    await self.drained.wait()
        self._paused = False
        metrics.QUEUE_FULL.set(0)
        log.warning("the queue has room again (%d lines): reading resumes", self.queue.depth)

    # -- run -------------------------------------------------------------------------------
    def checkin_body(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "version": agent_version(),
            "source": self.source.name,
            "source_state": self.source.state,
            "source_error": self.source.error,
            "last_line_at": self.source.last_line_at,
            "pbx_timezone": self.settings.pbx_timezone,
            "queue_depth": self.queue.depth,
            "queue_full": self._paused,
            "oldest_age_s": round(self.queue.oldest_age_s(), 3),
            "rejected": self.queue.rejected_count(),
            "uptime_s": round(time.monotonic() - self.started, 3),
            "checkin_interval_s": self.settings.checkin_interval_min * 60,
        }

    async def checkin(self) -> bool:
        try:
            answer = await self.client.post_json(
                "/v1/edge/checkin",
                self.checkin_body(),
                headers=self.delivery.headers(),
                timeout=self.settings.request_timeout_s,
            )
        except HttpError as exc:
            log.warning("check-in failed: %s", exc)
            return False
        if answer.status_code >= 300:
            log.warning("check-in refused: HTTP %d %s", answer.status_code, answer.text[:200])
        return answer.status_code < 300

    async def _checkins(self) -> None:
        """A check-in at start and every ``EDGE_CHECKIN_INTERVAL``. One that is not answered
        with a 2xx (ingest not up yet, unreachable, refusing) is tried again after the
        delivery's backoff (``EDGE_TIMEOUT`` times ``EDGE_TIMEOUT_DECAY`` per failure, at most
        ``EDGE_MAX_TIMEOUT``, never longer than the interval), so the device shows in the
        registry as soon as ingest answers, not an interval later."""
        interval = self.settings.checkin_interval_min * 60
        backoff = Backoff(self.settings)
        while True:
            if await self.checkin():
                backoff.reset()
                await asyncio.sleep(interval)
            else:
                await asyncio.sleep(min(backoff.step(), interval))

    async def _deliver(self) -> None:
        before = self.delivery.delivered
        while True:
            await self.delivery.run_once()
            delivered = self.delivery.delivered - before
            if delivered:
                metrics.DELIVERED.inc(delivered)
                before = self.delivery.delivered
                self.drained.set()

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        log.info(
            "edge agent %s: device %s, source %s, %d lines queued, delivering to %s",
            agent_version(),
            self.device,
            self.source.describe(),
            self.queue.depth,
            s.ingest_url,
        )
        tasks = [
            asyncio.create_task(self.source.run(), name="edge-source"),
            asyncio.create_task(self._deliver(), name="edge-delivery"),
            asyncio.create_task(self._checkins(), name="edge-checkin"),
        ]
        stopping = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopping and not task.cancelled() and task.exception():
                    raise task.exception()  # type: ignore[misc]
        finally:
            await _cancel_all([stopping, *tasks])
            await self.client.aclose()
            self.queue.close()
            log.info(
                "edge agent stopped; %d lines stay queued for the next start", self.queue.depth
            )


async def _cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended. A cancel can be lost on its way down
    (a library that catches it, Python 3.11's ``wait_for`` returning a result that completed at
    the same moment), and a task that lost it goes on looping: cancel again until all are done,
    so a stop never waits for a loop that did not hear it."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.debug("task %s ended with %r while stopping", task.get_name(), task.exception())

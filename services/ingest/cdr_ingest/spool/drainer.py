"""The spool drainer: ships the spool to the bus in order, in batches, with backoff while the
bus is away, and acknowledges a batch to the spool only once the bus acknowledged it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cdr_ingest.spool.codec import SpooledRecord
from cdr_ingest.spool.segment_log import Spool
from cdrkit.bus import Producer, Record
from cdrkit.bus.runner import cancel_and_wait
from cdrmodel.errors import CdrflowError, Transient

__all__ = ["Drainer"]

log = logging.getLogger(__name__)


@dataclass
class Drainer:
    """Ships the spool to ``topic`` in order; retries with backoff while the bus is away.

    ``probe`` (the bus ping) runs before each retry, so batches are not queued into a producer
    that cannot reach the broker; ``on_recover`` (e.g. creating topics a broker lost) runs once
    each time the bus comes back.
    """

    spool: Spool
    producer: Producer
    topic: str
    probe: Callable[[], Awaitable[None]]
    send_timeout_s: float = 10.0
    on_recover: Callable[[], Awaitable[None]] | None = None
    batch_records: int = 500
    batch_bytes: int = 4 * 1024 * 1024
    retry_initial_s: float = 0.2
    retry_max_s: float = 5.0
    reject_dir: Path | None = None
    failing: bool = False
    last_error: str | None = None
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    @property
    def draining(self) -> bool:
        """Records wait and the bus is taking them (not in a retry backoff)."""
        return not self.spool.empty and not self.failing and self.running

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="spool-drainer")

    async def stop(self) -> None:
        if self._task is not None:
            # Not a plain cancel + await: a cancellation that lands as a timed-out send
            # completes is swallowed by asyncio.wait_for (Python 3.11) and the drain loop would
            # go on retrying, so stop() would wait forever.
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        delay = self.retry_initial_s
        while True:
            await self.spool.wait_nonempty()
            try:
                batch = await self.spool.peek(
                    max_records=self.batch_records, max_bytes=self.batch_bytes
                )
            except OSError as exc:
                # A segment that cannot be read now (EIO, removed by hand) must not end the
                # drainer for good: report it and try again, as for an unavailable bus.
                log.error("reading the spool failed (%s); retrying", exc)
                self.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(self.retry_max_s)
                continue
            if batch is None:
                await asyncio.sleep(0.01)  # an append is still being written
                continue
            try:
                if self.failing:
                    async with asyncio.timeout(self.send_timeout_s):
                        await self.probe()
                    if self.on_recover is not None:
                        async with asyncio.timeout(self.send_timeout_s):
                            await self.on_recover()
                await self._send(batch.records)
            except (Transient, TimeoutError) as exc:
                if not self.failing:
                    log.warning(
                        "spool drain paused, the bus is unavailable (%s); %d records wait",
                        exc or type(exc).__name__,
                        self.spool.depth,
                    )
                self.failing = True
                self.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            except Exception:
                log.exception("spool drain failed unexpectedly; retrying")
                await asyncio.sleep(self.retry_max_s)
                continue
            if self.failing:
                log.info("the bus is back; draining %d spooled records", self.spool.depth)
            self.failing, self.last_error, delay = False, None, self.retry_initial_s
            await self.spool.ack(batch)

    async def _send(self, records: Sequence[SpooledRecord]) -> None:
        batch = [Record(value=r.value, key=r.key) for r in records]
        try:
            async with asyncio.timeout(self.send_timeout_s):
                await self.producer.send_many(self.topic, batch)
        except Transient:
            raise
        except CdrflowError:
            # The bus refused some record for good (e.g. larger than its message limit): send
            # the batch one by one and keep every refused record aside instead of losing it.
            for record in batch:
                try:
                    async with asyncio.timeout(self.send_timeout_s):
                        await self.producer.send(self.topic, record.value, key=record.key)
                except Transient:
                    raise
                except CdrflowError as exc:
                    self._reject(record, exc)

    def _reject(self, record: Record, exc: CdrflowError) -> None:
        directory = self.reject_dir or self.spool.directory / "rejected"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{time.time_ns()}.json"
        path.write_bytes(record.value)
        log.error("the bus refused a spooled envelope for good (%s); kept in %s", exc, path)

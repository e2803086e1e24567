"""The consume loop every service uses: fetch a batch, make it durable, then commit.

Delivery contract (``Delivery.AT_LEAST_ONCE``):

1. ``getmany`` returns a batch; the handler processes it and returns only once its effects are
   durable (database transaction committed, produced messages acknowledged).
2. The loop then commits the *next* offset of every partition in the batch.
3. A crash anywhere before step 2 means the batch is delivered again; handlers are idempotent on
   the call id, so redelivery changes nothing.

Transient failures (database or broker unreachable) retry the same batch with exponential backoff,
so the loop pauses and resumes by itself. Any other failure is retried a few times and then stops
the loop: ``ready()`` reports the reason (``/readyz`` turns red) instead of the loop skipping or
draining messages it cannot handle. Per-message poison is the handler's job (dead letters).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

from cdrkit.bus.base import Bus, CommitFailed, Consumer, Delivery, Message, TopicPartition
from cdrkit.db import is_transient
from cdrkit.metrics import BATCH_SECONDS, COMMITS, CONSUMED, LAG, RETRIES, STOPPED
from cdrkit.redact import public_error
from cdrmodel.errors import Transient

log = logging.getLogger(__name__)

BatchHandler = Callable[[Sequence[Message]], Awaitable[None]]


class StopConsuming(Exception):
    """Raised by a handler to stop the loop on purpose (e.g. a flood of dead letters)."""


class ConsumeLoop:
    delivery = Delivery.AT_LEAST_ONCE

    def __init__(
        self,
        bus: Bus,
        topics: Sequence[str],
        group: str,
        handler: BatchHandler,
        *,
        batch_size: int = 500,
        poll_timeout_s: float = 0.5,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
        max_unexpected_failures: int = 5,
        commit_timeout_s: float = 30.0,
    ) -> None:
        self.bus = bus
        self.topics = list(topics)
        self.group = group
        self.handler = handler
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.max_unexpected_failures = max_unexpected_failures
        self.commit_timeout_s = commit_timeout_s
        self.stopped_reason: str | None = None
        self.processed = 0
        self._consumer: Consumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()
        self._uncommitted: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        await self.bus.ensure_topics(self.topics)
        self._consumer = await self.bus.consumer(self.topics, self.group, on_revoke=self._on_revoke)
        STOPPED.labels(self.group).set(0)
        self._task = asyncio.create_task(self._run(), name=f"consume:{self.group}")

    def ready(self) -> str | None:
        """None when healthy, else a sentence saying why the loop is not consuming."""
        if self.stopped_reason:
            return self.stopped_reason
        if self._task is None:
            return f"consumer {self.group} not started"
        if self._task.done():
            return f"consumer {self.group} has exited"
        return None

    async def stop(self) -> None:
        """Graceful: finish the batch in hand, commit what is durable, leave the group."""
        self._stopping.set()
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.commit_timeout_s)
            except TimeoutError:
                await cancel_and_wait(self._task)
        await self._commit()
        await self._close_consumer()

    async def abort(self) -> None:
        """Crash simulation: stop at once, commit nothing (uncommitted work is redelivered)."""
        self._stopping.set()
        if self._task is not None:
            await cancel_and_wait(self._task)
        self._uncommitted.clear()
        await self._close_consumer()

    async def _close_consumer(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.close()

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        try:
            while not self._stopping.is_set():
                try:
                    batch = await consumer.getmany(
                        timeout_s=self.poll_timeout_s, max_records=self.batch_size
                    )
                except Exception as exc:
                    if not _is_transient(exc):
                        raise
                    log.warning("consumer %s: fetch failed, retrying: %s", self.group, exc)
                    await self._sleep(self.retry_initial_s)
                    continue
                self._report_lag(consumer)
                if not batch:
                    continue
                async with self._lock:
                    started = time.perf_counter()
                    if not await self._handle(batch):
                        return  # stopping while a batch was failing: leave it uncommitted
                    for msg in batch:
                        self._uncommitted[msg.tp] = msg.offset + 1
                    await self._commit()
                    BATCH_SECONDS.labels(self.group).observe(time.perf_counter() - started)
                self.processed += len(batch)
        except StopConsuming as exc:
            self._fail(str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("consumer %s stopped on an unexpected error", self.group)
            self._fail(f"consumer {self.group} stopped: {public_error(exc)}")

    def _report_lag(self, consumer: Consumer) -> None:
        per_topic = dict.fromkeys(self.topics, 0)
        for tp, lag in consumer.lag().items():
            per_topic[tp.topic] = per_topic.get(tp.topic, 0) + lag
        for topic, lag in per_topic.items():
            LAG.labels(self.group, topic).set(lag)

    def _fail(self, reason: str) -> None:
        self.stopped_reason = reason
        STOPPED.labels(self.group).set(1)
        log.error("consumer %s stopped: %s", self.group, reason)

    async def _handle(self, batch: Sequence[Message]) -> bool:
        """Run the handler until it succeeds. False if asked to stop before it did."""
        delay = self.retry_initial_s
        unexpected = 0
        first, last = batch[0], batch[-1]
        while True:
            try:
                await self.handler(batch)
            except StopConsuming:
                raise
            except Exception as exc:
                if self._stopping.is_set():
                    return False
                RETRIES.labels(self.group).inc()
                if _is_transient(exc):
                    log.warning(
                        "consumer %s: batch %s..%s failed (transient), retrying in %.1fs: %s",
                        self.group,
                        first,
                        last,
                        delay,
                        exc,
                    )
                else:
                    unexpected += 1
                    log.exception(
                        "consumer %s: batch %s..%s failed (%d/%d)",
                        self.group,
                        first,
                        last,
                        unexpected,
                        self.max_unexpected_failures,
                    )
                    if unexpected >= self.max_unexpected_failures:
                        raise
                await self._sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
            else:
                for msg in batch:
                    CONSUMED.labels(self.group, msg.topic).inc()
                return True

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        if self._consumer is None or not self._uncommitted:
            return
        offsets = {tp: off for tp, off in self._uncommitted.items() if only is None or tp in only}
        if not offsets:
            return
        try:
            await asyncio.wait_for(self._consumer.commit(offsets), self.commit_timeout_s)
        except (CommitFailed, TimeoutError) as exc:
            # The work is durable and idempotent: whoever owns the partition now re-reads it.
            COMMITS.labels(self.group, "failed").inc()
            log.warning("consumer %s: commit of %s refused: %s", self.group, offsets, exc)
        except Exception as exc:
            COMMITS.labels(self.group, "failed").inc()
            log.warning("consumer %s: commit of %s failed: %s", self.group, offsets, exc)
            return  # keep the offsets; the next batch's commit carries them again
        else:
            COMMITS.labels(self.group, "ok").inc()
        for tp, off in offsets.items():
            if self._uncommitted.get(tp) == off:
                del self._uncommitted[tp]

    async def _on_revoke(self, partitions: set[TopicPartition]) -> None:
        """Final commit before partitions move to another member."""
        try:
            # Bounded: a batch stuck retrying must not hold up the whole group's rebalance.
            await asyncio.wait_for(self._lock.acquire(), self.commit_timeout_s)
        except TimeoutError:
            return
        try:
            await self._commit(only=partitions)
            for tp in partitions:
                self._uncommitted.pop(tp, None)
        finally:
            self._lock.release()


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, Transient) or is_transient(exc)


@asynccontextmanager
async def consuming(
    bus: Bus, topics: Sequence[str], group: str, handler: BatchHandler, *, batch_size: int
) -> AsyncIterator[ConsumeLoop]:
    """A started ``ConsumeLoop`` for the block; stopped gracefully (commit what is durable) at
    its end. The shape every service's ``start`` uses."""
    loop = ConsumeLoop(bus, topics, group, handler, batch_size=batch_size)
    await loop.start()
    try:
        yield loop
    finally:
        await loop.stop()


@asynccontextmanager
async def background(
    coro: Coroutine[Any, Any, None], name: str
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``coro`` as a task for the block (a periodic job, a drainer); cancelled at its end."""
    task = asyncio.create_task(coro, name=name)
    try:
        yield task
    finally:
        await cancel_and_wait(task)


async def cancel_and_wait(task: asyncio.Task[None], *, recancel_s: float = 0.5) -> None:
    """Cancel ``task`` and wait until it has ended.

    A cancellation can be swallowed on its way down (Python 3.11's ``asyncio.wait_for`` drops one
    that arrives as the awaited call completes; a library may catch it in a retry loop), and a
    plain ``await task`` then waits forever for a job that keeps looping: cancel again until the
    task is done."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=recancel_s)
    if not task.cancelled() and task.exception() is not None:
        log.warning(
            "task %s ended with %r while being cancelled", task.get_name(), task.exception()
        )

"""The consume loop every service uses: fetch a batch, make it durable, then commit.

Delivery contract (``Delivery.AT_LEAST_ONCE``):

1. ``getmany`` returns a batch; the handler processes it and returns only once its effects are
   durable (database transaction committed, produced messages acknowledged).
2. The loop then commits the *next* offset of every partition in the batch.
3. A crash anywhere before step 2 means the batch is delivered again; handlers are idempotent on
   the call id, so redelivery changes nothing.

Transient failures (database or broker unreachable) retry the same batch with exponential backoff,
so the loop pauses and resumes by itself.

Poison isolation: any other failure of a batch splits it in two and handles each half on its own,
down to the single message that fails (bisection: a 500-message batch with one poison message
costs about 2·log2(500) ≈ 18 handler calls). A single message is retried a few times (a fault
that passes is not poison); if it still fails it is handed to ``on_poison`` (which dead-letters it
with the reason) and the loop goes on, so no single message, whatever the store or the handler
cannot take, stops a consumer. Without ``on_poison`` (or when ``max_consecutive_poison`` messages
in a row fail: that is a systematic fault, not poison) the loop stops: ``ready()`` reports the
reason (``/readyz`` turns red) instead of draining the topic into the dead letters.
Handlers still dead-letter what they can recognise themselves (cheaper than bisection).

Batching: a fetch that returns fewer than ``batch_size`` messages is topped up for at most
``gather_s`` (default ``GATHER_S``, 20 ms) before the batch is handled. Each batch costs a
database transaction, a produce round trip and an offset commit whatever its size, so at a
steady few hundred CDRs/s handling the trickle message by message spent more CPU on those than
on the CDRs (issue 15). Nothing is acknowledged or committed during the wait; it only adds up to
``gather_s`` to the time a CDR takes through each stage.

Fault injection (tests only, ``CDRFLOW_FAULT_HOLD_DIR``, never set in production): with
``hold_dir`` set, a loop whose ``<hold_dir>/<group>.arm`` file holds a number N stops right
after the batch that brings the messages it has handled to N or more is durable and *before*
its offsets are committed: it writes ``<group>.held`` (JSON: pid, group, processed, the offsets
it is about to commit) and waits, serving everything else, until the ``.arm`` file is removed.
A crash test SIGKILLs the process there, exactly in the window a crash must survive
(tests/e2e/test_chaos_processes.py). Without the ``.arm`` file the loop never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cdrkit.bus.base import Bus, CommitFailed, Consumer, Delivery, Message, TopicPartition
from cdrkit.db import is_transient
from cdrkit.metrics import BATCH_SECONDS, COMMITS, CONSUMED, LAG, POISON, RETRIES, STOPPED
from cdrkit.redact import public_error, public_text
from cdrmodel import DeadLetter, topics
from cdrmodel.errors import Transient

log = logging.getLogger(__name__)

GATHER_S = 0.02

BatchHandler = Callable[[Sequence[Message]], Awaitable[None]]
# Called with a message that fails on its own, every time, and the last error: make it a dead
# letter (durably: return only once it is stored/published). Transient errors are retried.
PoisonHandler = Callable[[Message, Exception], Awaitable[None]]


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
        on_poison: PoisonHandler | None = None,
        max_consecutive_poison: int = 20,
        gather_s: float = GATHER_S,
        hold_dir: Path | None = None,
    ) -> None:
        self.bus = bus
        self.gather_s = gather_s
        self.topics = list(topics)
        self.group = group
        self.handler = handler
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.max_unexpected_failures = max_unexpected_failures
        self.commit_timeout_s = commit_timeout_s
        self.on_poison = on_poison
        self.max_consecutive_poison = max_consecutive_poison
        self.hold_dir = hold_dir  # fault injection (module docstring); None in production
        self._poison_run = 0  # messages in a row that were poison
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
                async with asyncio.timeout(self.commit_timeout_s):
                    await asyncio.shield(self._task)
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
                if batch and len(batch) < self.batch_size and self.gather_s > 0:
                    batch = await self._gather(consumer, batch)
                self._report_lag(consumer)
                if not batch:
                    continue
                async with self._lock:
                    started = time.perf_counter()
                    if not await self._handle(batch):
                        return  # stopping while a batch was failing: leave it uncommitted
                    self._uncommitted.update(_next_offsets(batch))
                    if self.hold_dir is not None:
                        await self._hold_before_commit(self.processed + len(batch))
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

    async def _gather(self, consumer: Consumer, batch: list[Message]) -> list[Message]:
        """``batch`` topped up with what arrives within ``gather_s`` (up to ``batch_size``).
        Successive fetches keep each partition's offset order. A fetch error ends the wait:
        the messages in hand are handled, the next fetch meets the error again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.gather_s
        while len(batch) < self.batch_size and not self._stopping.is_set():
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                more = await consumer.getmany(
                    timeout_s=left, max_records=self.batch_size - len(batch)
                )
            except Exception:  # handled by the next fetch in _run
                break
            if not more:
                break
            batch = [*batch, *more]
        return batch

    async def _hold_before_commit(self, processed: int) -> None:
        """Fault injection (module docstring): the batch is durable, its offsets not committed."""
        assert self.hold_dir is not None
        arm = self.hold_dir / f"{self.group}.arm"
        try:
            threshold = int(arm.read_text().strip() or "0")
        except (OSError, ValueError):
            return  # not armed (or not yet written in full)
        if processed < threshold:
            return
        held = self.hold_dir / f"{self.group}.held"
        state = {
            "pid": os.getpid(),
            "group": self.group,
            "processed": processed,
            "offsets": {f"{tp.topic}:{tp.partition}": off for tp, off in self._uncommitted.items()},
        }
        tmp = held.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(held)  # whole or absent: the test reads it as soon as it appears
        log.warning(
            "consumer %s: fault injection: %d messages durable, holding before the offset "
            "commit until %s is removed",
            self.group,
            processed,
            arm,
        )
        while arm.exists() and not self._stopping.is_set():
            await self._sleep(0.05)
        held.unlink(missing_ok=True)

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
        """Handle the batch, isolating poison by bisection (module docstring). False if asked to
        stop before it was done."""
        outcome = await self._attempt(
            batch, give_up_after=1 if len(batch) > 1 else self.max_unexpected_failures
        )
        if outcome is None:
            return False
        if outcome is True:
            self._poison_run = 0
            per_topic: dict[str, int] = {}
            for msg in batch:
                per_topic[msg.topic] = per_topic.get(msg.topic, 0) + 1
            for topic, n in per_topic.items():  # a labels() lookup per topic, not per message
                CONSUMED.labels(self.group, topic).inc(n)
            return True
        if len(batch) > 1:
            mid = len(batch) // 2
            log.warning(
                "consumer %s: batch %s..%s failed (%s); splitting it to isolate the message",
                self.group,
                batch[0],
                batch[-1],
                _describe(outcome),
            )
            return await self._handle(batch[:mid]) and await self._handle(batch[mid:])
        msg = batch[0]
        if self.on_poison is None:
            raise outcome
        self._poison_run += 1
        if self._poison_run >= self.max_consecutive_poison:
            raise StopConsuming(
                f"consumer {self.group}: {self._poison_run} messages in a row failed on their "
                f"own (last {msg}: {_describe(outcome)}); that is a systematic fault, not a "
                "poison message: stopped instead of dead-lettering the topic"
            )
        log.error("consumer %s: %s is poison, dead-lettered: %s", self.group, msg, outcome)
        POISON.labels(self.group).inc()
        on_poison = self.on_poison
        done = await self._attempt(batch, give_up_after=1, call=lambda: on_poison(msg, outcome))
        if done is None:
            return False
        if done is not True:
            raise done  # the dead letter itself cannot be written: stop, nothing is skipped
        CONSUMED.labels(self.group, msg.topic).inc()
        return True

    async def _attempt(
        self,
        batch: Sequence[Message],
        *,
        give_up_after: int,
        call: Callable[[], Awaitable[None]] | None = None,
    ) -> Literal[True] | Exception | None:
        """Run the handler (or ``call``) on ``batch`` until it succeeds (True), fails
        ``give_up_after`` times on a non-transient error (that error), or the loop is asked to
        stop (None). Transient errors retry with backoff for as long as they last."""
        delay = self.retry_initial_s
        unexpected = 0
        first, last = batch[0], batch[-1]
        while True:
            try:
                await (call() if call is not None else self.handler(batch))
            except StopConsuming:
                raise
            except Exception as exc:
                if self._stopping.is_set():
                    return None
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
                    log.warning(
                        "consumer %s: batch %s..%s failed (%d/%d): %s",
                        self.group,
                        first,
                        last,
                        unexpected,
                        give_up_after,
                        _describe(exc),
                        exc_info=unexpected == 1,
                    )
                    if unexpected >= give_up_after:
                        return exc
                await self._sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
            else:
                return True

    async def _sleep(self, seconds: float) -> None:
        # Not asyncio.wait_for: on Python 3.11 it drops a cancel (abort) that arrives as the
        # stop event is set, and the loop would go on to commit what a crash must not.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        if self._consumer is None or not self._uncommitted:
            return
        offsets = {tp: off for tp, off in self._uncommitted.items() if only is None or tp in only}
        if not offsets:
            return
        try:
            async with asyncio.timeout(self.commit_timeout_s):
                await self._consumer.commit(offsets)
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
            async with asyncio.timeout(self.commit_timeout_s):
                await self._lock.acquire()
        except TimeoutError:
            return
        try:
            await self._commit(only=partitions)
            for tp in partitions:
                self._uncommitted.pop(tp, None)
        finally:
            self._lock.release()


def _next_offsets(batch: Sequence[Message]) -> dict[TopicPartition, int]:
    """The offset to commit per partition once ``batch`` is done: after its last message there
    (a batch holds each partition's messages in offset order)."""
    last: dict[tuple[str, int], int] = {}
    for msg in batch:
        last[msg.topic, msg.partition] = msg.offset
    return {TopicPartition(topic, part): off + 1 for (topic, part), off in last.items()}


def poison_reason(exc: Exception) -> str:
    """A dead letter's reason for ``exc``: the error's first line (a database error's driver
    message, e.g. "value out of int32 range"), never the SQL statement. Dead letters are read
    by operators with the read role and carry the message itself anyway."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException):
        return public_text(f"{type(orig).__name__}: {orig}")
    return public_text(f"{type(exc).__name__}: {exc}")


def _describe(exc: BaseException) -> str:
    return public_error(exc) if isinstance(exc, Exception) else type(exc).__name__


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, Transient) or is_transient(exc)


@asynccontextmanager
async def consuming(
    bus: Bus,
    topics: Sequence[str],
    group: str,
    handler: BatchHandler,
    *,
    batch_size: int,
    on_poison: PoisonHandler | None = None,
    hold_dir: Path | None = None,
) -> AsyncIterator[ConsumeLoop]:
    """A started ``ConsumeLoop`` for the block; stopped gracefully (commit what is durable) at
    its end. The shape every service's ``start`` uses. A poison message is dead-lettered by
    ``on_poison``, by default published to ``cdr.dlq`` with the stage ``group``. ``hold_dir``:
    fault injection for crash tests (module docstring; ``CDRFLOW_FAULT_HOLD_DIR``)."""
    loop = ConsumeLoop(
        bus,
        topics,
        group,
        handler,
        batch_size=batch_size,
        on_poison=on_poison or publish_poison(bus, group),
        hold_dir=hold_dir,
    )
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


def publish_poison(bus: Bus, stage: str) -> PoisonHandler:
    """The default ``on_poison``: the message, its place and the reason to ``cdr.dlq``."""

    async def dead_letter(msg: Message, exc: Exception) -> None:
        letter = DeadLetter(
            stage=stage,
            error="poison",
            reason=f"{stage} failed on this message alone, every time: {poison_reason(exc)}",
            failed_at=datetime.now(UTC),
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            raw_value=msg.value.decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
        )
        await bus.producer.send(topics.DLQ, letter.to_json(), key=msg.key)

    return dead_letter

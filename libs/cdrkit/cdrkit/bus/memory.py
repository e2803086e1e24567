"""The in-process bus (``memory://[name]``): the all-in-one mode and fast tests.

It keeps the delivery contract of ``cdrkit.bus.base`` with Kafka's shape, so the contract suite can
run one set of tests against both backends:

* Topics are created on first use with ``partitions`` partitions; a partition is an append-only
  list whose index is the offset. Nothing is ever deleted (the process is the retention).
* A key picks its partition with ``crc32(key) % partitions`` (stable across runs, but not Kafka's
  murmur2, so a key may land on a different partition number than on Kafka); keyless messages
  go round-robin.
* Consumer groups assign partitions round-robin over their members and rebalance whenever a member
  joins or leaves. Only partitions that move are revoked: their owner's ``on_revoke`` is awaited
  (it may still commit them) before the new owner starts at the group's committed offset, or at the
  earliest offset when nothing was committed. A retained partition keeps its position.
* ``commit`` by a member that does not own the partition (any more) raises ``CommitFailed``.
* ``close`` leaves the group without committing: the next owner gets the uncommitted messages again,
  which is how tests simulate a crash.

Buses built from the same URL (ignoring the query string) in one process share one broker, so
``memory://`` services of the all-in-one app talk to each other; different names
(``memory://test-<uuid>``) are fully isolated. Brokers live until ``memory_broker.reset()``. The
broker (``cdrkit.bus.memory_broker``) is bound to one event loop; it is not thread-safe.

URL options: ``partitions`` (default 4), ``max_request_size`` (bytes of key, value and headers of
one message, default 8 MiB + 64 KiB, as for Kafka), ``rebalance_timeout_ms`` (how long a rebalance
waits for ``on_revoke`` callbacks, default 30000), ``retention_bytes`` (bytes of values kept per
partition, default 64 MiB, 0 = unlimited). Compression is accepted and ignored.

Durability: with ``dir=PATH`` every message is written to an append-only, fsync'd log under
``PATH`` before ``send`` returns, committed offsets are persisted too, and a broker started on the
same directory (after a crash or a restart) resumes from it; see ``cdrkit.bus.journal``. Options
``fsync`` (default true) and ``segment_bytes`` (default 16 MiB). Without ``dir`` everything lives
in memory and the process is the retention. ``cdrflow run`` puts the log in its data dir.

Retention, as Kafka's ``retention.bytes``: past ``retention_bytes`` a partition drops its oldest
messages, so the all-in-one process does not grow for as long as it runs; unlike Kafka it never
drops a message that a group consuming the partition has not committed yet.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

from cdrkit.bus.base import (
    BusConfig,
    BusError,
    CommitFailed,
    Message,
    Record,
    RevokeCallback,
    TopicPartition,
)
from cdrkit.bus.memory_broker import Broker, Entry, Group, Headers, Topic, broker_for, int_option
from cdrmodel.errors import PayloadTooLarge

logger = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_SIZE = 8 * 1024 * 1024 + 64 * 1024
DEFAULT_REBALANCE_TIMEOUT_MS = 30_000
DEFAULT_RETENTION_BYTES = 64 * 1024 * 1024

# A coroutine that never awaits anything never yields to the event loop: a tight produce loop
# would starve every other task (HTTP handlers in the all-in-one app). Yield now and then.
_YIELD_EVERY_SENDS = 64


class _Wakeup:
    """``asyncio.Event``'s ``set``/``clear``/``wait`` for the consumer's fetch, with the wait
    bounded by a deadline: a wait that runs out is ended by a timer resolving its future, not by
    ``asyncio.timeout`` cancelling the task and raising ``TimeoutError`` (~20-30 µs of the one
    event loop each time; a consume loop's gathering window runs out once per batch:
    docs/performance.md, ninth round, h9allinone)."""

    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: list[asyncio.Future[None]] = []

    def set(self) -> None:
        self._flag = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait_until(self, deadline: float) -> None:
        """Return once set, or at ``deadline`` (the loop's clock), whichever comes first."""
        if self._flag:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_at(deadline, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class MemoryProducer:
    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self._sends = 0

    def _check_size(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> None:
        size = len(value) + (len(key) if key is not None else 0)
        for name, header_value in headers:
            size += len(name) + len(header_value)
        if size > self._bus._max_request_size:
            raise PayloadTooLarge(
                f"a {size}-byte message for {topic} exceeds the bus limit of "
                f"{self._bus._max_request_size} bytes"
            )

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
    ) -> None:
        self._check_size(topic, key, value, headers)
        target = self._bus._topic(topic)
        writer = self._bus._require_broker().writer
        if writer is not None:
            ts = time.time_ns() // 1_000_000
            await writer.submit((target, [(target.partition_for(key), key, value, headers, ts)]))
            return
        target.append(key, value, headers, time.time_ns() // 1_000_000)
        target.wake()
        self._sends += 1
        if self._sends % _YIELD_EVERY_SENDS == 0:
            await asyncio.sleep(0)

    async def send_many(self, topic: str, records: Sequence[Record]) -> None:
        for record in records:
            self._check_size(topic, record.key, record.value, record.headers)
        target = self._bus._topic(topic)
        now_ms = time.time_ns() // 1_000_000
        writer = self._bus._require_broker().writer
        if writer is not None:
            if records:
                batch = [
                    (target.partition_for(r.key), r.key, r.value, r.headers, now_ms)
                    for r in records
                ]
                await writer.submit((target, batch))
            else:
                await asyncio.sleep(0)
            return
        for record in records:
            target.append(record.key, record.value, record.headers, now_ms)
        target.wake()
        await asyncio.sleep(0)


class MemoryConsumer:
    """One member of an in-process consumer group."""

    _ids = itertools.count(1)

    def __init__(
        self,
        bus: MemoryBus,
        group: Group,
        topics: Iterable[Topic],
        on_revoke: RevokeCallback | None,
    ) -> None:
        self._bus = bus
        self._group = group
        self._topics = tuple(topics)
        self._topic_by_name = {t.name: t for t in self._topics}
        self.topics = frozenset(t.name for t in self._topics)
        self._on_revoke = on_revoke
        self.member_id = f"{group.name}-{next(self._ids)}"
        self._positions: dict[TopicPartition, int] = {}
        self._logs: dict[TopicPartition, list[Entry | None]] = {}
        self._revoking: set[TopicPartition] = set()
        # What getmany reads from: owned partitions that are not being revoked.
        self._fetchable: list[tuple[TopicPartition, list[Entry | None]]] = []
        self._next_start = 0
        self._wakeup = _Wakeup()
        self._closed = False

    # -- the Consumer protocol -----------------------------------------------------------------

    async def getmany(self, *, timeout_s: float, max_records: int) -> list[Message]:
        # Always yield once: a consume loop over a full topic must not starve the event loop.
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout_s, 0.0)
        while True:
            if self._closed:
                raise BusError(f"consumer {self.member_id} is closed")
            batch = self._drain(max_records)
            if batch:
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            self._wakeup.clear()
            for topic in self._topics:
                topic.waiters.add(self)
            try:
                await self._wakeup.wait_until(deadline)
            finally:
                for topic in self._topics:
                    topic.waiters.discard(self)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self._closed:
            raise CommitFailed(f"consumer {self.member_id} of group {self._group.name} is closed")
        for tp in offsets:
            if tp not in self._logs:
                raise CommitFailed(
                    f"{tp} is not assigned to member {self.member_id} of group {self._group.name}"
                )
        committed = self._group.committed
        broker = self._group.broker
        if broker.journal is not None:
            broker.journal.commit(self._group.name, dict(offsets))
        for tp, offset in offsets.items():
            committed[tp] = offset
            broker.topics[tp.topic].enforce_retention(tp.partition)
            logger.debug("group %s committed %s@%d", self._group.name, tp, offset)
        if broker.journal is not None:
            broker.journal.maybe_compact(self._group.name, committed)

    def assignment(self) -> set[TopicPartition]:
        return set(self._logs)

    def lag(self) -> dict[TopicPartition, int]:
        return {tp: max(len(log) - self._positions[tp], 0) for tp, log in self._logs.items()}

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        self._bus._consumers.discard(self)
        await self._group.leave(self, self._bus._rebalance_timeout_s)
        logger.info("consumer %s left group %s", self.member_id, self._group.name)

    # -- used by the group -------------------------------------------------------------------

    def _drain(self, max_records: int) -> list[Message]:
        fetchable = self._fetchable
        count = len(fetchable)
        if not count:
            return []
        # Start at a different partition each call so that one busy partition cannot starve
        # the others when max_records is small.
        start = self._next_start % count
        self._next_start += 1
        positions = self._positions
        batch: list[Message] = []
        debug = logger.isEnabledFor(logging.DEBUG)
        for i in range(count):
            tp, log = fetchable[(start + i) % count]
            # Below the retention start there is nothing left to read (like Kafka's reset).
            position = max(positions[tp], self._topic_by_name[tp.topic].starts[tp.partition])
            if position >= len(log):
                continue
            taken = cast(list[Entry], log[position : position + max_records - len(batch)])
            positions[tp] = position + len(taken)
            topic, partition = tp.topic, tp.partition
            batch.extend(
                [
                    Message(topic, partition, offset, *entry)
                    for offset, entry in enumerate(taken, position)
                ]
            )
            if debug:
                logger.debug(
                    "%s consumed %s@%d..%d", self.member_id, tp, position, positions[tp] - 1
                )
            if len(batch) >= max_records:
                break
        return batch

    def _refresh_fetchable(self) -> None:
        self._fetchable = [
            (tp, log) for tp, log in sorted(self._logs.items()) if tp not in self._revoking
        ]
        self._wakeup.set()

    def _take(self, start_offsets: Mapping[TopicPartition, int]) -> None:
        topics = self._group.broker.topics
        for tp, offset in start_offsets.items():
            self._logs[tp] = topics[tp.topic].logs[tp.partition]
            self._positions[tp] = offset
            logger.debug("%s assigned %s@%d", self.member_id, tp, offset)
        self._refresh_fetchable()

    def _begin_revoke(self, tps: set[TopicPartition]) -> None:
        # Still owned (so on_revoke may commit them) but no longer fetched from.
        self._revoking |= tps
        self._refresh_fetchable()

    async def _call_on_revoke(self, tps: set[TopicPartition]) -> None:
        if self._on_revoke is None or self._closed:
            return
        try:
            await self._on_revoke(set(tps))
        except Exception:
            logger.exception("%s: on_revoke(%s) failed", self.member_id, sorted(tps))

    def _release(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            self._logs.pop(tp, None)
            position = self._positions.pop(tp, None)
            logger.debug("%s revoked %s@%s", self.member_id, tp, position)
        self._revoking -= tps
        self._refresh_fetchable()

    def _release_all(self) -> None:
        self._release(set(self._logs))


class MemoryBus:
    """The ``Bus`` protocol in-process; see the module docstring for its semantics."""

    def __init__(self, url: str, config: BusConfig) -> None:
        if config.scheme != "memory":
            raise ValueError(f"bus URL {url!r}: MemoryBus needs a memory:// URL")
        if config.partitions < 1:
            raise ValueError(f"bus URL {url!r}: partitions must be at least 1")
        self.url = url
        self._config = config
        self._max_request_size = int_option(config, "max_request_size", DEFAULT_MAX_REQUEST_SIZE)
        self._retention = int_option(config, "retention_bytes", DEFAULT_RETENTION_BYTES)
        self._rebalance_timeout_s = (
            int_option(config, "rebalance_timeout_ms", DEFAULT_REBALANCE_TIMEOUT_MS) / 1000
        )
        self._broker: Broker | None = None
        self._producer = MemoryProducer(self)
        self._consumers: set[MemoryConsumer] = set()

    async def start(self) -> None:
        if self._broker is None:
            self._broker = broker_for(self.url, self._config, self._retention)
            logger.info("memory bus %s started", self._broker.name or "(default)")

    async def close(self) -> None:
        for consumer in list(self._consumers):
            await consumer.close()
        self._broker = None

    @property
    def producer(self) -> MemoryProducer:
        return self._producer

    async def consumer(
        self,
        topics: Sequence[str],
        group: str,
        *,
        on_revoke: RevokeCallback | None = None,
    ) -> MemoryConsumer:
        if isinstance(topics, str):
            raise TypeError("topics must be a sequence of topic names, not one string")
        broker = self._require_broker()
        member = MemoryConsumer(
            self, broker.group(group), [self._topic(t) for t in topics], on_revoke
        )
        self._consumers.add(member)
        await member._group.join(member, self._rebalance_timeout_s)
        return member

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        for topic in topics:
            self._topic(topic)

    async def ping(self) -> None:
        self._require_broker()

    def _require_broker(self) -> Broker:
        if self._broker is None:
            raise BusError(f"memory bus {self.url} is not started (or closed)")
        return self._broker

    def _topic(self, name: str) -> Topic:
        return self._require_broker().topic(name, self._config.partitions, self._retention)

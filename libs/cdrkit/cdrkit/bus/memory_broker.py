"""The in-process broker behind ``memory://`` buses: topics (append-only partitions with
retention), consumer groups (round-robin assignment, rebalancing, committed offsets), the
optional journal that makes it durable, and the registry that lets buses built from the same URL
in one process share one broker. The bus-facing side (producer, consumer, ``MemoryBus``) and the
semantics are in ``cdrkit.bus.memory``."""

from __future__ import annotations

import asyncio
import itertools
import logging
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from cdrkit.bus.base import BusConfig, TopicPartition
from cdrkit.bus.journal import Frame, GroupCommit, Journal, Loaded

if TYPE_CHECKING:
    from cdrkit.bus.memory import MemoryConsumer

__all__ = [
    "Broker",
    "Entry",
    "Group",
    "Headers",
    "Topic",
    "broker_for",
    "durable_url",
    "int_option",
    "reset",
]

logger = logging.getLogger("cdrkit.bus.memory")

Headers = tuple[tuple[str, bytes], ...]

# A message as a partition holds it: (key, value, headers, timestamp_ms); its offset is its index
# and the topic and partition are the log's. A plain tuple of bytes, str and int, which the
# cyclic garbage collector stops tracking after its first pass: a partition retains up to
# ``retention`` bytes of messages (tens of thousands of small cdr.normalized ones), and as
# ``Message`` objects every full collection walked all of them again (issue 15, fifth round).
# Consumers get ``Message`` objects, built when they fetch.
Entry = tuple[bytes | None, bytes, Headers, int]


class Topic:
    __slots__ = (
        "broker",
        "logs",
        "name",
        "next_keyless",
        "retention",
        "sizes",
        "starts",
        "waiters",
    )

    def __init__(self, broker: Broker, name: str, partitions: int, retention: int) -> None:
        self.broker = broker
        self.name = name
        # Offset = index. Retention replaces old messages with None (8 bytes a slot, not the
        # message) so offsets stay list indexes; ``starts`` is the first offset still held.
        self.logs: list[list[Entry | None]] = [[] for _ in range(partitions)]
        self.starts = [0] * partitions
        self.sizes = [0] * partitions  # bytes of the values held
        self.retention = retention
        self.next_keyless = 0
        # Consumers blocked in getmany on this topic; woken (and forgotten) on the next append.
        self.waiters: set[MemoryConsumer] = set()

    def partition_for(self, key: bytes | None) -> int:
        n = len(self.logs)
        if key is None:
            partition = self.next_keyless % n
            self.next_keyless += 1
            return partition
        return zlib.crc32(key) % n

    def append(self, key: bytes | None, value: bytes, headers: Headers, timestamp_ms: int) -> None:
        self.append_to(self.partition_for(key), key, value, headers, timestamp_ms)

    def append_to(
        self, partition: int, key: bytes | None, value: bytes, headers: Headers, timestamp_ms: int
    ) -> None:
        self.logs[partition].append((key, value, headers, timestamp_ms))
        self.sizes[partition] += len(value)
        if self.retention and self.sizes[partition] > self.retention:
            self.enforce_retention(partition)

    def enforce_retention(self, partition: int) -> None:
        """Drop the oldest messages while the partition holds more than ``retention`` bytes, but
        never one that a group consuming the partition has not committed yet: the in-process
        bus may forget what was read, never what is still to be read."""
        if not self.retention:
            return
        log, start, size = self.logs[partition], self.starts[partition], self.sizes[partition]
        limit = self.broker.committed_floor(TopicPartition(self.name, partition), len(log))
        while size > self.retention and start < limit:
            size -= len(cast(Entry, log[start])[1])
            log[start] = None
            start += 1
        self.starts[partition], self.sizes[partition] = start, size
        if self.broker.journal is not None:
            self.broker.journal.drop_below(TopicPartition(self.name, partition), start)

    def load(self, partition: int, loaded: Loaded) -> None:
        """Fill a partition with what the journal read back from disk."""
        log = self.logs[partition]
        log[:] = [None] * loaded.start
        log.extend((m.key, m.value, m.headers, m.timestamp_ms) for m in loaded.messages)
        self.starts[partition] = loaded.start
        self.sizes[partition] = sum(len(m.value) for m in loaded.messages)

    def wake(self) -> None:
        if self.waiters:
            for consumer in self.waiters:
                consumer._wakeup.set()
            self.waiters.clear()


# A produced batch waiting for the journal: the topic and (partition, key, value, headers, ts).
_Pending = tuple["Topic", list[tuple[int, bytes | None, bytes, Headers, int]]]


class Broker:
    def __init__(self, name: str, journal: Journal | None = None, retention: int = 0) -> None:
        self.name = name
        self.topics: dict[str, Topic] = {}
        self.groups: dict[str, Group] = {}
        self.journal = journal
        self.writer: GroupCommit[_Pending] | None = None
        if journal is not None:
            self.writer = GroupCommit(self._flush, str(journal.root))
            self._load(journal, retention)

    def _load(self, journal: Journal, retention: int) -> None:
        for name, partitions in journal.topic_names():
            topic = self.topics[name] = Topic(self, name, partitions, retention)
            for p in range(partitions):
                topic.load(p, journal.load_partition(name, p))
        for name, committed in journal.load_groups().items():
            group = self.group(name)
            for tp, offset in committed.items():
                held = self.topics.get(tp.topic)
                if held is not None and tp.partition < len(held.logs):
                    group.committed[tp] = min(offset, len(held.logs[tp.partition]))
        logger.info(
            "memory bus %s: log under %s loaded: %s",
            self.name or "(default)",
            journal.root,
            ", ".join(
                f"{t.name} {sum(len(log) - s for log, s in zip(t.logs, t.starts, strict=True))}"
                for t in self.topics.values()
            )
            or "empty",
        )

    async def _flush(self, batches: list[_Pending]) -> None:
        """Write and fsync the batches, then make them visible (in submission order)."""
        journal = self.journal
        assert journal is not None
        frames: dict[tuple[Topic, int], list[Frame]] = {}
        for topic, records in batches:
            for partition, key, value, headers, ts in records:
                frames.setdefault((topic, partition), []).append((key, value, headers, ts))
        chunks = [
            (journal.prepare(TopicPartition(topic.name, p), len(topic.logs[p])), parts)
            for (topic, p), parts in frames.items()
        ]
        # Encoded in the worker thread too: the frames' CRC-32 (zlib releases the GIL over
        # 5 KB) and their joins were ~20-25 µs of the loop's time per 13-19 KB cdr.raw
        # message (docs/performance.md, ninth round, h9allinone).
        await asyncio.to_thread(journal.write_frames, chunks)
        for topic, records in batches:
            for partition, key, value, headers, ts in records:
                topic.append_to(partition, key, value, headers, ts)
        for topic in {topic for topic, _ in batches}:
            topic.wake()

    def topic(self, name: str, partitions: int, retention: int) -> Topic:
        topic = self.topics.get(name)
        if topic is None:
            topic = self.topics[name] = Topic(self, name, partitions, retention)
            if self.journal is not None:
                self.journal.create_topic(name, partitions)
                for p in range(partitions):
                    topic.load(p, self.journal.load_partition(name, p))
            logger.debug(
                "memory bus %s: created topic %s (%d partitions)", self.name, name, partitions
            )
        return topic

    def committed_floor(self, tp: TopicPartition, default: int) -> int:
        """The lowest offset a group consuming ``tp`` has committed (``default`` when none has);
        a group with members on the topic that has committed nothing yet holds everything."""
        floor = default
        for group in self.groups.values():
            offset = group.committed.get(tp)
            if offset is None:
                if any(tp.topic in member.topics for member in group.members) or any(
                    other.topic == tp.topic for other in group.committed
                ):
                    return 0  # a member reads the topic, or the group has read it before
                continue
            floor = min(floor, offset)
        return floor

    def group(self, name: str) -> Group:
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = Group(self, name)
        return group


_brokers: dict[str, Broker] = {}


def _broker_name(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


def broker_for(url: str, config: BusConfig, retention: int) -> Broker:
    name = _broker_name(url)
    broker = _brokers.get(name)
    directory = config.options.get("dir")
    if broker is None:
        journal = None
        if directory:
            journal = Journal(
                Path(directory),
                fsync=config.options.get("fsync", "true").lower() in ("1", "true", "yes", "on"),
                segment_bytes=int_option(config, "segment_bytes", 0),
            )
        broker = _brokers[name] = Broker(name, journal, retention)
    elif directory and (broker.journal is None or broker.journal.root != Path(directory)):
        raise ValueError(
            f"bus URL {url!r}: the in-process broker {name or '(default)'} is already running "
            f"{'on ' + str(broker.journal.root) if broker.journal else 'without a log directory'}"
        )
    return broker


def durable_url(url: str, directory: Path) -> str:
    """``url`` with its log in ``directory`` when it is a ``memory://`` URL without one (how the
    all-in-one ``cdrflow run`` keeps acknowledged messages across a crash); else ``url``."""
    parts = urlsplit(url)
    if parts.scheme != "memory" or "dir" in parse_qs(parts.query):
        return url
    query = urlencode([("dir", str(directory.resolve())), *parse_qsl(parts.query)], safe="/")
    return f"memory://{parts.netloc}{parts.path}?{query}"


def reset(url: str | None = None) -> None:
    """Forget the in-process broker of ``url`` (all of them when ``None``) with its data.

    Buses already started on it keep working on the old broker; new ones get an empty broker.
    Tests call this so that no state leaks between them.
    """
    gone = list(_brokers.values()) if url is None else [_brokers.get(_broker_name(url))]
    if url is None:
        _brokers.clear()
    else:
        _brokers.pop(_broker_name(url), None)
    for broker in gone:
        if broker is not None and broker.journal is not None:
            broker.journal.close()  # releases the directory for a "restarted" broker


class Group:
    """A consumer group: its members, who owns what, and the committed offsets."""

    def __init__(self, broker: Broker, name: str) -> None:
        self.broker = broker
        self.name = name
        self.members: list[MemoryConsumer] = []
        self.committed: dict[TopicPartition, int] = {}
        self.generation = 0
        # One membership change at a time: a rebalance awaits on_revoke callbacks, and a second
        # join meanwhile must see the outcome of the first.
        self._lock = asyncio.Lock()

    async def join(self, member: MemoryConsumer, rebalance_timeout_s: float) -> None:
        async with self._lock:
            self.members.append(member)
            await self._rebalance(rebalance_timeout_s)

    async def leave(self, member: MemoryConsumer, rebalance_timeout_s: float) -> None:
        async with self._lock:
            if member not in self.members:
                return
            self.members.remove(member)
            member._release_all()
            await self._rebalance(rebalance_timeout_s)

    def _target(self) -> dict[MemoryConsumer, set[TopicPartition]]:
        """Round-robin over members in join order, skipping members not subscribed to a topic."""
        target: dict[MemoryConsumer, set[TopicPartition]] = {m: set() for m in self.members}
        if not self.members:
            return target
        topics = sorted({t for m in self.members for t in m.topics})
        turn = itertools.cycle(self.members)
        for name in topics:
            topic = self.broker.topics[name]
            for partition in range(len(topic.logs)):
                member = next(turn)
                while name not in member.topics:
                    member = next(turn)
                target[member].add(TopicPartition(name, partition))
        return target

    async def _rebalance(self, rebalance_timeout_s: float) -> None:
        target = self._target()
        revoked = {
            member: lost
            for member in self.members
            if (lost := member.assignment() - target[member])
        }
        if revoked:
            for member, lost in revoked.items():
                member._begin_revoke(lost)
            callbacks = [
                asyncio.ensure_future(member._call_on_revoke(lost))
                for member, lost in revoked.items()
            ]
            _done, pending = await asyncio.wait(callbacks, timeout=rebalance_timeout_s)
            if pending:
                # Like a Kafka member that misses the rebalance timeout: the group moves on and
                # the late owner's commits are refused from now on.
                logger.error(
                    "group %s: on_revoke still running after %.0f s; reassigning anyway",
                    self.name,
                    rebalance_timeout_s,
                )
            for member, lost in revoked.items():
                member._release(lost)
        self.generation += 1
        for member, tps in target.items():
            gained = tps - member.assignment()
            if gained:
                member._take({tp: self.committed.get(tp, 0) for tp in gained})
        logger.info(
            "group %s generation %d: %s",
            self.name,
            self.generation,
            "; ".join(
                f"{member.member_id}: {', '.join(map(str, sorted(tps))) or '-'}"
                for member, tps in target.items()
            )
            or "no members",
        )


def int_option(config: BusConfig, name: str, default: int) -> int:
    raw = config.options.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"bus URL option {name}={raw!r} must be an integer") from None

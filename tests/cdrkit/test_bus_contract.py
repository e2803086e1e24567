"""The bus contract, one suite run against both backends: in-process and Kafka (on Tansu).

Every test owns its topics and groups (uuid suffixes), so nothing depends on test order or on what
else runs against the session broker. Assertions are on messages actually delivered.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator

import pytest

from cdrkit.bus import (
    Bus,
    BusConfig,
    BusError,
    CommitFailed,
    Consumer,
    Message,
    Record,
    TopicPartition,
    memory_broker,
    open_bus,
)
from cdrkit.testing.tansu import TansuBroker
from cdrmodel.errors import PayloadTooLarge

PARTITIONS = 4
MiB = 1024 * 1024
# Tansu holds every group (re)formation for about 3 s; fast heartbeats let a member notice a
# rebalance at once, and short timeouts keep a broken test from hanging for minutes.
KAFKA_OPTIONS = (
    f"&partitions={PARTITIONS}&session_timeout_ms=6000&heartbeat_interval_ms=200"
    "&rebalance_timeout_ms=6000&request_timeout_ms=10000&ping_timeout_ms=2000"
)


@pytest.fixture(params=["memory", "durable", "kafka"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bus_url(request: pytest.FixtureRequest, backend: str) -> Iterator[str]:
    if backend in ("memory", "durable"):
        url = f"memory://test-{uuid.uuid4().hex}?partitions={PARTITIONS}"
        if backend == "durable":  # the in-process bus with its log on disk (cdrflow run)
            url += f"&dir={request.getfixturevalue('tmp_path')}/bus"
        yield url
        memory_broker.reset(url)
    else:
        # Only Kafka tests start the session broker.
        yield str(request.getfixturevalue("kafka_url")) + KAFKA_OPTIONS


@pytest.fixture
async def bus(bus_url: str) -> AsyncIterator[Bus]:
    bus = open_bus(bus_url)
    await bus.start()
    yield bus
    await bus.close()


@pytest.fixture
def quiet_s(backend: str) -> float:
    """How long to listen to be sure nothing more arrives (Kafka needs a few fetch rounds)."""
    return 1.0 if backend == "kafka" else 0.2


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def next_offsets(messages: Iterable[Message]) -> dict[TopicPartition, int]:
    offsets: dict[TopicPartition, int] = {}
    for m in messages:
        offsets[m.tp] = max(offsets.get(m.tp, 0), m.offset + 1)
    return offsets


def ids(messages: Iterable[Message]) -> list[tuple[TopicPartition, int, bytes]]:
    return sorted((m.tp, m.offset, m.value) for m in messages)


async def consume(
    consumer: Consumer, count: int, *, timeout_s: float = 20.0, commit: bool = False
) -> list[Message]:
    """Poll until ``count`` messages arrived, committing each batch if asked."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    got: list[Message] = []
    while len(got) < count:
        remaining = deadline - loop.time()
        if remaining <= 0:
            pytest.fail(f"received {len(got)} of {count} messages within {timeout_s} s")
        batch = await consumer.getmany(timeout_s=min(remaining, 1.0), max_records=500)
        got.extend(batch)
        if commit and batch:
            await consumer.commit(next_offsets(batch))
    return got


async def more(consumer: Consumer, quiet_s: float) -> list[Message]:
    """Whatever else arrives within ``quiet_s`` (tests expect nothing)."""
    return await consumer.getmany(timeout_s=quiet_s, max_records=500)


async def until_split(
    *consumers: Consumer, partitions: set[TopicPartition], timeout_s: float = 20.0
) -> list[set[TopicPartition]]:
    """Wait until the members own disjoint, non-empty shares that together cover ``partitions``."""
    deadline = time.monotonic() + timeout_s
    while True:
        shares = [c.assignment() for c in consumers]
        disjoint = sum(len(s) for s in shares) == len(set().union(*shares))
        if disjoint and all(shares) and set().union(*shares) == partitions:
            return shares
        if time.monotonic() > deadline:
            pytest.fail(f"the group did not settle: {shares}")
        await asyncio.sleep(0.05)


async def produce_distinct(bus: Bus, topic: str, count: int) -> set[bytes]:
    values = {b"m%03d" % i for i in range(count)}
    await bus.producer.send_many(topic, [Record(v, key=b"key-" + v) for v in sorted(values)])
    return values


def all_partitions(topic: str) -> set[TopicPartition]:
    return {TopicPartition(topic, p) for p in range(PARTITIONS)}


async def test_publish_then_consume_round_trips_values_keys_and_headers(
    bus: Bus, quiet_s: float
) -> None:
    topic = unique("rt")
    await bus.ensure_topics([topic])
    await bus.producer.send(topic, b"v0", key=b"k0", headers=(("trace", b"1"),))
    await bus.producer.send(topic, b"v1")
    await bus.producer.send_many(
        topic,
        [
            Record(b"v2", key=b"k2", headers=(("a", b"x"), ("b", b""), ("a", b"y"))),
            Record(b"v3"),
            Record(b"\x00\xff binary", key=b"k4"),
        ],
    )
    consumer = await bus.consumer([topic], unique("g"))

    got = await consume(consumer, 5)

    assert Counter((m.value, m.key, m.headers) for m in got) == Counter(
        [
            (b"v0", b"k0", (("trace", b"1"),)),
            (b"v1", None, ()),
            (b"v2", b"k2", (("a", b"x"), ("b", b""), ("a", b"y"))),
            (b"v3", None, ()),
            (b"\x00\xff binary", b"k4", ()),
        ]
    )
    assert all(m.topic == topic and 0 <= m.partition < PARTITIONS for m in got)
    assert all(m.timestamp_ms > 1_600_000_000_000 for m in got)
    for partition in {m.partition for m in got}:
        offsets = [m.offset for m in got if m.partition == partition]
        assert offsets == list(range(len(offsets)))  # from the start, in order, no gaps
    assert await more(consumer, quiet_s) == []


async def test_same_key_lands_in_one_partition_in_order(bus: Bus) -> None:
    topic = unique("order")
    await bus.ensure_topics([topic])
    keys = [b"call-%d" % i for i in range(6)]
    for i in range(8):
        for key in keys:
            await bus.producer.send(topic, b"%s:%d" % (key, i), key=key)
    consumer = await bus.consumer([topic], unique("g"))

    got = await consume(consumer, len(keys) * 8)

    for key in keys:
        mine = [m for m in got if m.key == key]
        assert len({m.partition for m in mine}) == 1
        assert [m.value for m in mine] == [b"%s:%d" % (key, i) for i in range(8)]
        assert [m.offset for m in mine] == sorted(m.offset for m in mine)


async def test_new_member_starts_after_the_committed_offset(bus: Bus, quiet_s: float) -> None:
    topic, group = unique("commit"), unique("g")
    await bus.ensure_topics([topic])
    await produce_distinct(bus, topic, 12)
    first = await bus.consumer([topic], group)
    got = await consume(first, 12)
    # Only the first message of each partition counts as processed.
    processed = {m.tp: m for m in sorted(got, key=lambda m: m.offset, reverse=True)}
    await first.commit({tp: m.offset + 1 for tp, m in processed.items()})
    await first.close()
    await bus.producer.send(topic, b"late", key=b"late")
    second = await bus.consumer([topic], group)

    expected = [m for m in got if m.offset > processed[m.tp].offset]
    got_again = await consume(second, len(expected) + 1)

    assert ids(m for m in got_again if m.value != b"late") == ids(expected)
    assert [m.value for m in got_again].count(b"late") == 1
    assert await more(second, quiet_s) == []


async def test_uncommitted_messages_are_redelivered_after_a_crash(bus: Bus, quiet_s: float) -> None:
    topic, group = unique("crash"), unique("g")
    await bus.ensure_topics([topic])
    await produce_distinct(bus, topic, 8)
    crashed = await bus.consumer([topic], group)
    got = await consume(crashed, 8)
    await crashed.close()  # no commit: a crash
    with pytest.raises(CommitFailed):
        await crashed.commit(next_offsets(got))
    successor = await bus.consumer([topic], group)

    redelivered = await consume(successor, 8)

    assert ids(redelivered) == ids(got)
    assert await more(successor, quiet_s) == []


async def test_group_members_split_the_partitions_and_see_each_message_once(
    bus: Bus, quiet_s: float
) -> None:
    topic, group = unique("split"), unique("g")
    await bus.ensure_topics([topic])
    values = await produce_distinct(bus, topic, 40)
    first = await bus.consumer([topic], group)
    second = await bus.consumer([topic], group)
    share1, share2 = await until_split(first, second, partitions=all_partitions(topic))

    with pytest.raises(CommitFailed):
        await first.commit({next(iter(share2)): 0})  # not its partition

    seen: dict[int, list[Message]] = {1: [], 2: []}
    deadline = time.monotonic() + 20
    while len(seen[1]) + len(seen[2]) < len(values):
        assert time.monotonic() < deadline, f"only {len(seen[1]) + len(seen[2])} arrived"
        for n, consumer in ((1, first), (2, second)):
            batch = await consumer.getmany(timeout_s=0.2, max_records=500)
            if batch:
                await consumer.commit(next_offsets(batch))
                seen[n].extend(batch)

    assert {m.tp for m in seen[1]} <= share1
    assert {m.tp for m in seen[2]} <= share2
    everything = seen[1] + seen[2]
    assert sorted(m.value for m in everything) == sorted(values)  # each exactly once
    assert [*await asyncio.gather(more(first, quiet_s), more(second, quiet_s))] == [[], []]


async def test_on_revoke_is_awaited_before_a_joining_member_takes_over(
    bus: Bus, quiet_s: float
) -> None:
    topic, group = unique("revoke"), unique("g")
    await bus.ensure_topics([topic])
    await produce_distinct(bus, topic, 20)
    consumed: dict[TopicPartition, int] = {}
    revocations: list[set[TopicPartition]] = []
    committed_on_revoke = asyncio.Event()
    holder: list[Consumer] = []

    async def on_revoke(partitions: set[TopicPartition]) -> None:
        revocations.append(set(partitions))
        await asyncio.sleep(0.3)  # the rebalance has to wait for this
        # The final commit: everything consumed from the partitions about to move.
        await holder[0].commit({tp: o for tp, o in consumed.items() if tp in partitions})
        committed_on_revoke.set()

    owner = await bus.consumer([topic], group, on_revoke=on_revoke)
    holder.append(owner)
    assert owner.assignment() == all_partitions(topic)
    consumed.update(next_offsets(await consume(owner, 20)))

    joiner = await bus.consumer([topic], group)
    assert committed_on_revoke.is_set()  # before the joiner got anything
    _, joiner_share = await until_split(owner, joiner, partitions=all_partitions(topic))

    assert revocations
    assert joiner_share <= set().union(*revocations)
    # What the owner committed on revocation is not delivered again to the new owner.
    assert await more(joiner, quiet_s) == []


async def test_another_group_reads_everything_again(bus: Bus) -> None:
    topic = unique("groups")
    await bus.ensure_topics([topic])
    values = await produce_distinct(bus, topic, 10)
    # Joined together: on Kafka each group formation takes seconds, and they are independent.
    first, other = await asyncio.gather(
        bus.consumer([topic], unique("g")), bus.consumer([topic], unique("g"))
    )

    first_got = await consume(first, 10, commit=True)
    other_got = await consume(other, 10)

    assert {m.value for m in first_got} == values
    assert ids(other_got) == ids(first_got)


async def test_large_values_round_trip_under_each_compression(bus_url: str) -> None:
    codecs = ("gzip", "lz4", "snappy", "zstd")
    topics = {codec: unique(codec) for codec in codecs}
    expected: dict[str, list[bytes]] = {}
    buses = [open_bus(f"{bus_url}&compression={codec}") for codec in codecs]
    try:
        for codec, bus in zip(codecs, buses, strict=True):
            await bus.start()
            await bus.ensure_topics([topics[codec]])
            # Compressible (a repeated block) but not trivially so.
            value = os.urandom(64 * 1024) * 16
            assert len(value) == MiB
            expected[topics[codec]] = [value]
            await bus.producer.send(topics[codec], value, key=codec.encode())
        # The largest message the bus is configured for, incompressible.
        big = os.urandom(8 * MiB)
        await buses[-1].producer.send(topics["zstd"], big, key=b"big")
        expected[topics["zstd"]].append(big)
        consumer = await buses[0].consumer(list(topics.values()), unique("g"))

        # Five messages: one per codec and the big one (a count of four passed only when the big
        # one happened to arrive in the same fetch as the fourth).
        sent = sum(len(v) for v in expected.values())
        assert sent == 5
        got = await consume(consumer, sent, timeout_s=30)
        got += await more(consumer, 1.0)  # and nothing twice

        def digests(values: dict[str, list[bytes]]) -> dict[str, list[tuple[int, str]]]:
            # Compared by length and hash: a failure prints lines, not megabytes of bytes.
            return {
                t: sorted((len(v), hashlib.sha256(v).hexdigest()) for v in vs)
                for t, vs in values.items()
            }

        received: dict[str, list[bytes]] = {}
        for m in sorted(got, key=lambda m: (m.topic, m.partition, m.offset)):
            received.setdefault(m.topic, []).append(m.value)
        assert digests(received) == digests(expected)
    finally:
        for bus in buses:
            await bus.close()


async def test_a_message_over_the_size_limit_is_refused(bus: Bus) -> None:
    topic = unique("big")
    too_big = b"x" * (9 * MiB)
    with pytest.raises(PayloadTooLarge):
        await bus.producer.send(topic, too_big)
    with pytest.raises(PayloadTooLarge):
        await bus.producer.send_many(topic, [Record(too_big)])


async def test_ping(backend: str, request: pytest.FixtureRequest) -> None:
    if backend != "kafka":
        url = f"memory://test-{uuid.uuid4().hex}"
        if backend == "durable":
            url += f"?dir={request.getfixturevalue('tmp_path')}/bus"
        bus = open_bus(url)
        with pytest.raises(BusError):
            await bus.ping()  # not started
        await bus.start()
        await bus.ping()
        await bus.close()
        with pytest.raises(BusError):
            await bus.ping()
        memory_broker.reset(url)
        return

    broker: TansuBroker = request.getfixturevalue("fresh_tansu")
    bus = open_bus(broker.url + KAFKA_OPTIONS)
    await bus.start()
    try:
        await bus.ping()
        broker.stop()
        started = time.monotonic()
        with pytest.raises(BusError):
            await bus.ping()
        assert time.monotonic() - started < 10
        broker.start()  # same port: the bus finds it again by itself
        deadline = time.monotonic() + 15
        while True:
            try:
                await bus.ping()
                break
            except BusError:
                assert time.monotonic() < deadline, "ping did not recover after the restart"
                await asyncio.sleep(0.2)
    finally:
        await bus.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("memory://", {"scheme": "memory", "hosts": "", "partitions": 4, "compression": "zstd"}),
        ("memory://test-a?partitions=2", {"hosts": "test-a", "partitions": 2}),
        (
            "kafka://k1:9092,k2:9092?idempotence=false&compression=none&session_timeout_ms=6000",
            {
                "scheme": "kafka",
                "hosts": "k1:9092,k2:9092",
                "idempotence": False,
                "compression": None,
                "options": {
                    "idempotence": "false",
                    "compression": "none",
                    "session_timeout_ms": "6000",
                },
            },
        ),
        ("kafka://k1:9092", {"idempotence": True, "compression": "zstd", "partitions": 4}),
        ("kafka://k1:9092?compression=snappy", {"compression": "snappy"}),
    ],
)
def test_bus_config_parse_accepts(url: str, expected: dict[str, object]) -> None:
    config = BusConfig.parse(url)
    assert {name: getattr(config, name) for name in expected} == expected


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379",
        "kafka://",
        "kafka://k1:9092?compression=brotli",
        "memory://?partitions=many",
    ],
)
def test_bus_config_parse_rejects(url: str) -> None:
    with pytest.raises(ValueError, match=r"bus URL|invalid literal"):
        BusConfig.parse(url)


@pytest.mark.parametrize(
    "url",
    [
        "kafka://k1:9092?session_timeout_ms=soon",
        "kafka://k1:9092?partitions=0",
        "memory://x?partitions=0",
        "memory://x?rebalance_timeout_ms=later",
    ],
)
def test_open_bus_rejects_bad_options(url: str) -> None:
    with pytest.raises(ValueError, match="bus URL"):
        open_bus(url)


async def test_memory_buses_share_a_broker_by_name_only() -> None:
    name, other = f"memory://test-{uuid.uuid4().hex}", f"memory://test-{uuid.uuid4().hex}"
    producer_bus, consumer_bus, stranger = (
        open_bus(f"{name}?partitions=1"),
        open_bus(name),
        open_bus(other),
    )
    for bus in (producer_bus, consumer_bus, stranger):
        await bus.start()
    try:
        await producer_bus.producer.send("shared", b"hello")
        shared = await consumer_bus.consumer(["shared"], "g")
        isolated = await stranger.consumer(["shared"], "g")
        assert [m.value for m in await consume(shared, 1)] == [b"hello"]
        assert await more(isolated, 0.1) == []
    finally:
        for bus in (producer_bus, consumer_bus, stranger):
            await bus.close()
        memory_broker.reset(name)
        memory_broker.reset(other)


async def test_lag_counts_what_the_member_has_not_fetched(bus: Bus) -> None:
    topic = unique("lag")
    await bus.ensure_topics([topic])
    await bus.producer.send_many(topic, [Record(b"v%d" % i, key=b"one-call") for i in range(40)])
    consumer = await bus.consumer([topic], unique("g"))
    got: list[Message] = []
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        got = await consumer.getmany(timeout_s=0.5, max_records=10)
    assert 0 < len(got) <= 10
    tp = got[0].tp

    assert consumer.lag()[tp] == 40 - len(got)
    rest = await consume(consumer, 40 - len(got))
    assert len(rest) == 40 - len(got)
    assert consumer.lag()[tp] == 0
    await consumer.close()

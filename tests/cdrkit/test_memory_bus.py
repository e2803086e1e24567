"""What only the in-process bus does: bounded retention that never drops unread messages."""

from __future__ import annotations

import gc
import uuid
from pathlib import Path

import pytest

from cdrkit.bus import BusError, Consumer, Message, Record, TopicPartition, memory_broker, open_bus
from cdrkit.bus.journal import Journal
from cdrkit.bus.memory import MemoryBus


async def _read_all(bus: MemoryBus, topic: str, group: str) -> list[bytes]:
    consumer = await bus.consumer([topic], group)
    got: list[bytes] = []
    while batch := await consumer.getmany(timeout_s=0.05, max_records=1000):
        got += [m.value for m in batch]
        await consumer.commit({m.tp: m.offset + 1 for m in batch})
    await consumer.close()
    return got


async def test_retention_drops_only_what_every_group_committed() -> None:
    bus = open_bus(f"memory://ret-{uuid.uuid4().hex}?partitions=1&retention_bytes=1000")
    assert isinstance(bus, MemoryBus)
    await bus.start()
    topic = "t"
    await bus.ensure_topics([topic])
    slow = await bus.consumer([topic], "slow")  # joined, reads nothing, commits nothing yet
    values = [f"{i:03d}".encode() * 10 for i in range(100)]  # 30 bytes each, 3000 in all
    await bus.producer.send_many(topic, [Record(v) for v in values])

    # Nobody has committed: retention may not drop anything "slow" has still to read…
    assert await _read_all(bus, topic, "fast") == values
    # …and "fast" committed everything, but "slow" has committed nothing: still all there.
    first = await slow.getmany(timeout_s=0.1, max_records=10)
    assert [m.value for m in first] == values[:10]
    await slow.commit({TopicPartition(topic, 0): 90})

    # Now both groups are past offset 90: the partition shrinks to its 1000-byte budget.
    await bus.producer.send(topic, b"x" * 30)
    assert await _read_all(bus, topic, f"late-{uuid.uuid4().hex}") == [
        *values[-(1000 // 30) + 1 :],
        b"x" * 30,
    ]
    await slow.close()
    await bus.close()


async def test_held_messages_are_not_walked_by_the_garbage_collector() -> None:
    """A partition holds up to ``retention_bytes`` of messages (``cdrflow run``: tens of
    thousands of small cdr.normalized ones). Held as objects the cyclic collector tracks, every
    full collection walked them all again (~50 ms more a pass per 150,000, a stall of the one
    event loop the posts are answered on). Held as plain tuples it stops tracking them; the
    consumers still get whole ``Message`` objects."""
    bus = open_bus(f"memory://gc-{uuid.uuid4().hex}?partitions=2")
    assert isinstance(bus, MemoryBus)
    await bus.start()
    await bus.ensure_topics(["t"])
    records = [
        Record(f"v{i}".encode(), key=f"k{i % 7}".encode(), headers=(("h", f"{i}".encode()),))
        for i in range(200)
    ]
    await bus.producer.send_many("t", records)
    # A tuple is untracked by a pass that finds nothing tracked in it: a header pair, then the
    # headers, then the entry holding them, one pass each at worst (a long-lived message goes
    # through many passes on its way to the oldest generation).
    for _ in range(3):
        gc.collect()
    held = [entry for log in bus._require_broker().topics["t"].logs for entry in log]
    assert len(held) == 200
    assert not [entry for entry in held if gc.is_tracked(entry)]

    consumer = await bus.consumer(["t"], "g")
    got = await _drain(consumer)
    assert all(isinstance(m, Message) and m.topic == "t" for m in got)
    assert sorted(m.value for m in got) == sorted(r.value for r in records)
    by_value = {r.value: r for r in records}
    for m in got:
        assert m.key == by_value[m.value].key
        assert m.headers == by_value[m.value].headers
        assert m.timestamp_ms > 0
    # Offsets are each partition's positions, in the order the messages were produced.
    for partition in {m.partition for m in got}:
        mine = [m for m in got if m.partition == partition]
        assert [m.offset for m in mine] == list(range(len(mine)))
        produced = [r.value for r in records if r.value in {m.value for m in mine}]
        assert [m.value for m in mine] == produced
    await consumer.close()
    await bus.close()


async def test_durable_log_survives_a_restart_and_resumes_at_the_committed_offset(
    tmp_path: Path,
) -> None:
    """``dir=``: what was acknowledged is read back after the broker is gone (a crash: nothing
    closed cleanly), committed offsets included; a torn tail is cut away."""
    url = f"memory://dur-{uuid.uuid4().hex}?partitions=2&dir={tmp_path}/bus&segment_bytes=200"
    bus = open_bus(url)
    await bus.start()
    values = [f"v{i:03d}".encode() * 5 for i in range(40)]  # 20 bytes each: several segments
    await bus.producer.send_many("t", [Record(v, key=v) for v in values[:20]])
    for v in values[20:]:
        await bus.producer.send("t", v, key=v, headers=(("h", b"1"),))
    consumer = await bus.consumer(["t"], "g")
    first = await consumer.getmany(timeout_s=0.1, max_records=15)
    await consumer.commit({m.tp: m.offset + 1 for m in first})
    committed = {m.value for m in first}
    memory_broker.reset(url)  # the process is gone: no close, no final commit

    # A write the crash cut short: half a frame at the end of a partition's active segment.
    part0 = sorted((tmp_path / "bus" / "topics" / "t" / "0").glob("*.log"))
    assert len(part0) > 1, "segment_bytes=200 should have rolled segments"
    part0[-1].write_bytes(part0[-1].read_bytes() + b"\x00\x00\x01\x00torn")

    again = open_bus(url)
    await again.start()
    consumer = await again.consumer(["t"], "g")
    rest = await _drain(consumer)
    assert {m.value for m in rest} == set(values) - committed
    assert all(m.headers == (("h", b"1"),) for m in rest if m.value in values[20:])
    # A new group reads everything, exactly once, in per-key order.
    everything = await _drain(await again.consumer(["t"], "other"))
    assert sorted(m.value for m in everything) == sorted(values)
    # Appends after the restart continue the offsets (no reuse of the torn tail's position).
    await again.producer.send("t", b"after", key=values[0])
    (after,) = await _drain(consumer)
    tp = after.tp
    assert after.offset == max(m.offset for m in everything if m.tp == tp) + 1
    await again.close()
    memory_broker.reset(url)


async def test_durable_log_directory_is_one_process_at_a_time(tmp_path: Path) -> None:
    url = f"memory://one-{uuid.uuid4().hex}?dir={tmp_path}/bus"
    bus = open_bus(url)
    await bus.start()
    with pytest.raises(BusError, match="in use"):
        Journal(tmp_path / "bus")
    memory_broker.reset(url)
    Journal(tmp_path / "bus").close()  # released with the broker


async def test_durable_retention_deletes_whole_segments_only_once_committed(
    tmp_path: Path,
) -> None:
    url = (
        f"memory://seg-{uuid.uuid4().hex}?partitions=1&dir={tmp_path}/bus"
        "&segment_bytes=300&retention_bytes=600"
    )
    bus = open_bus(url)
    await bus.start()
    directory = tmp_path / "bus" / "topics" / "t" / "0"
    consumer = await bus.consumer(["t"], "g")
    for n in range(6):  # a segment rolls between writes once it holds segment_bytes
        await bus.producer.send_many("t", [Record(b"%03d" % i * 10) for i in range(n, 60, 6)])
    grown = len(list(directory.glob("*.log")))
    assert grown > 4  # nothing committed: nothing dropped
    got = await _drain(consumer)
    await bus.producer.send("t", b"y" * 30)
    grown = len(list(directory.glob("*.log")))
    assert sorted(directory.glob("*.log"))[0].name == f"{0:020d}.log"  # read, not committed
    await consumer.commit({got[-1].tp: got[-1].offset + 1})
    await bus.producer.send("t", b"z" * 30)
    assert len(list(directory.glob("*.log"))) < grown
    memory_broker.reset(url)
    again = open_bus(url)
    await again.start()
    late = await _drain(await again.consumer(["t"], "g"))
    assert [m.value for m in late] == [b"y" * 30, b"z" * 30]
    memory_broker.reset(url)


async def _drain(consumer: Consumer) -> list[Message]:
    got: list[Message] = []
    while batch := await consumer.getmany(timeout_s=0.1, max_records=1000):
        got += batch
    return got


def _journal_with(tmp_path: Path, partitions: int) -> tuple[Journal, list[object]]:
    journal = Journal(tmp_path / "bus")
    journal.create_topic("t", partitions)
    files = []
    for p in range(partitions):
        journal.load_partition("t", p)
        files.append(journal.prepare(TopicPartition("t", p), 0))
    return journal, files


def test_durable_write_fsyncs_every_file_it_touched_at_the_same_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One group-commit write over three partitions: each file is fsync'd, the three fsyncs
    running together (a barrier only the three at once can pass), and the write returns only
    after all of them."""
    import os
    import threading

    from cdrkit.bus import journal as journal_module
    from cdrkit.bus.journal import decode_frames, encode

    journal, files = _journal_with(tmp_path, 3)
    together = threading.Barrier(3, timeout=5)
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        together.wait()  # BrokenBarrierError if the fsyncs ran one after the other
        real_fsync(fd)
        synced.append(fd)

    monkeypatch.setattr(journal_module.os, "fsync", fsync)
    frame = encode(None, b"value", (), 1)
    journal.write([(f, frame) for f in files])  # type: ignore[misc]
    assert sorted(synced) == sorted(f.fd for f in files)  # type: ignore[attr-defined]
    for p in range(3):
        (path,) = (tmp_path / "bus" / "topics" / "t" / str(p)).glob("*.log")
        assert [v for _, _, v, _, _ in decode_frames(path.read_bytes())] == [b"value"]
    journal.close()


def test_durable_write_whose_fsync_fails_is_cut_back_in_every_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One of the files' fsyncs fails: the write raises (nobody is told "durable") and every
    file it touched is cut back to its size before, so nothing of it is read back later."""
    import os

    from cdrkit.bus import journal as journal_module
    from cdrkit.bus.journal import encode

    journal, files = _journal_with(tmp_path, 3)
    first = encode(None, b"kept", (), 1)
    journal.write([(f, first) for f in files])  # type: ignore[misc]
    bad = files[2].fd  # type: ignore[attr-defined]
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if fd == bad:
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(journal_module.os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output"):
        journal.write([(f, encode(None, b"lost", (), 2)) for f in files])  # type: ignore[misc]
    journal.close()
    again = Journal(tmp_path / "bus")
    for p in range(3):
        assert [m.value for m in again.load_partition("t", p).messages] == [b"kept"]
    again.close()


# The frame encoding as the event loop did it before the journal's worker thread encoded the
# frames (ninth round, h9allinone): the oracle for the bytes on disk.
def _old_encode(key: bytes | None, value: bytes, headers: object, timestamp_ms: int) -> bytes:
    import struct
    import zlib

    parts = [struct.pack(">qiH", timestamp_ms, -1 if key is None else len(key), len(headers))]  # type: ignore[arg-type]
    if key is not None:
        parts.append(key)
    for name, hvalue in headers:  # type: ignore[attr-defined]
        raw = name.encode()
        parts += [struct.pack(">H", len(raw)), raw, struct.pack(">I", len(hvalue)), hvalue]
    parts.append(value)
    body = b"".join(parts)
    return struct.pack(">II", len(body), zlib.crc32(body)) + body


async def test_durable_log_files_hold_the_frames_the_loop_used_to_encode(tmp_path: Path) -> None:
    """Concurrent sends (single and batched; keys or none; headers; values from 0 bytes to
    40 KB, over zlib's 5 KB GIL threshold) on three partitions: every partition's log file is
    exactly the old encoding of its messages, in offset order (what the broker holds)."""
    import asyncio
    import random

    rng = random.Random(15)
    url = f"memory://enc-{uuid.uuid4().hex}?partitions=3&dir={tmp_path}/bus"
    bus = open_bus(url)
    assert isinstance(bus, MemoryBus)
    await bus.start()
    await bus.ensure_topics(["t"])

    def message() -> Record:
        key = None if rng.random() < 0.2 else uuid.UUID(int=rng.getrandbits(128)).hex.encode()
        headers = tuple(
            (f"h{i}-é", rng.randbytes(rng.randrange(0, 40))) for i in range(rng.randrange(0, 3))
        )
        return Record(
            rng.randbytes(rng.choice([0, 1, 300, 2000, 6000, 19000, 40000])), key, headers
        )

    async def one() -> None:
        r = message()
        await bus.producer.send("t", r.value, key=r.key, headers=r.headers)

    async def many() -> None:
        await bus.producer.send_many("t", [message() for _ in range(rng.randrange(0, 5))])

    for _ in range(6):
        await asyncio.gather(*(one() if rng.random() < 0.6 else many() for _ in range(40)))
    topic = bus._require_broker().topics["t"]
    held = 0
    for p, log in enumerate(topic.logs):
        (path,) = (tmp_path / "bus" / "topics" / "t" / str(p)).glob("*.log")
        expected = b"".join(_old_encode(*entry) for entry in log if entry is not None)
        assert path.read_bytes() == expected
        held += len(log)
    assert held > 300
    await bus.close()
    memory_broker.reset(url)


async def test_fetch_wait_ends_at_its_deadline_or_at_a_send_without_cancelling() -> None:
    """``getmany`` on an empty topic: returns [] once its timeout has passed, with the waiting
    task never cancelled (a timer ends the wait: ninth round, h9allinone); returns a message sent
    meanwhile at once, long before the timeout; and a cancelled fetch still raises
    CancelledError, leaving the consumer usable."""
    import asyncio
    import time

    bus = open_bus(f"memory://wait-{uuid.uuid4().hex}?partitions=2")
    assert isinstance(bus, MemoryBus)
    await bus.start()
    await bus.ensure_topics(["t"])
    consumer = await bus.consumer(["t"], "g")
    task = asyncio.current_task()
    assert task is not None
    started = time.monotonic()
    assert await consumer.getmany(timeout_s=0.05, max_records=10) == []
    assert time.monotonic() - started >= 0.045
    assert task.cancelling() == 0

    async def later() -> None:
        await asyncio.sleep(0.05)
        await bus.producer.send("t", b"v", key=b"k")

    sender = asyncio.create_task(later())
    started = time.monotonic()
    got = await consumer.getmany(timeout_s=5, max_records=10)
    assert [m.value for m in got] == [b"v"]
    assert time.monotonic() - started < 2
    await sender

    fetch = asyncio.create_task(consumer.getmany(timeout_s=5, max_records=10))
    await asyncio.sleep(0.02)
    fetch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fetch
    await bus.producer.send("t", b"w", key=b"k")
    assert [m.value for m in await consumer.getmany(timeout_s=1, max_records=10)] == [b"w"]
    await consumer.close()
    await bus.close()

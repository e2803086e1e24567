"""What only the in-process bus does: bounded retention that never drops unread messages."""

from __future__ import annotations

import uuid

from cdrkit.bus import Record, TopicPartition, open_bus
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

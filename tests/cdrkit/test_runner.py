"""The consume loop's delivery contract, on the in-process bus."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from cdrkit.bus import Bus, Message, Record, open_bus
from cdrkit.bus.runner import ConsumeLoop, StopConsuming, cancel_and_wait, consuming
from cdrmodel import DeadLetter, topics
from cdrmodel.errors import Transient


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    b = open_bus(f"memory://runner-{uuid.uuid4().hex}?partitions=2")
    await b.start()
    yield b
    await b.close()


async def _produce(bus: Bus, topic: str, n: int) -> None:
    await bus.producer.send_many(
        topic, [Record(value=str(i).encode(), key=str(i).encode()) for i in range(n)]
    )


async def _until(cond: object, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not cond():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def _drain_from_committed(bus: Bus, topic: str, group: str) -> list[bytes]:
    consumer = await bus.consumer([topic], group)
    got: list[bytes] = []
    for _ in range(5):
        got += [m.value for m in await consumer.getmany(timeout_s=0.1, max_records=1000)]
    await consumer.close()
    return got


async def test_transient_failures_pause_and_resume_without_loss(bus: Bus) -> None:
    topic, group = f"t-{uuid.uuid4().hex}", "g"
    await _produce(bus, topic, 50)
    seen: list[bytes] = []
    failures = 3

    async def handler(batch: Sequence[Message]) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise Transient("database restarting")
        seen.extend(m.value for m in batch)

    loop = ConsumeLoop(bus, [topic], group, handler, retry_initial_s=0.01)
    await loop.start()
    await _until(lambda: len(seen) >= 50)
    assert loop.ready() is None
    await loop.stop()
    assert sorted(seen, key=int) == [str(i).encode() for i in range(50)]
    # Everything was committed: a new member of the group has nothing left to read.
    assert await _drain_from_committed(bus, topic, group) == []


async def test_a_persistent_bug_stops_the_loop_and_reports_unready(bus: Bus) -> None:
    topic = f"t-{uuid.uuid4().hex}"
    await _produce(bus, topic, 5)

    async def handler(batch: Sequence[Message]) -> None:
        raise KeyError("bug")

    loop = ConsumeLoop(bus, [topic], "g", handler, retry_initial_s=0.01, max_unexpected_failures=3)
    await loop.start()
    await _until(lambda: loop.ready() is not None and "KeyError" in (loop.ready() or ""))
    await loop.stop()
    # Nothing was committed: the records are all still there for the group.
    assert len(await _drain_from_committed(bus, topic, "g")) == 5


async def test_stop_consuming_leaves_the_batch_uncommitted(bus: Bus) -> None:
    topic = f"t-{uuid.uuid4().hex}"
    await _produce(bus, topic, 5)

    async def handler(batch: Sequence[Message]) -> None:
        raise StopConsuming("flood of dead letters")

    loop = ConsumeLoop(bus, [topic], "g", handler)
    await loop.start()
    await _until(lambda: loop.ready() == "flood of dead letters")
    await loop.stop()
    assert len(await _drain_from_committed(bus, topic, "g")) == 5


async def test_abort_commits_nothing_in_hand_but_keeps_what_was_committed(bus: Bus) -> None:
    topic = f"t-{uuid.uuid4().hex}"
    await _produce(bus, topic, 20)
    gate = asyncio.Event()
    handled: list[bytes] = []

    async def handler(batch: Sequence[Message]) -> None:
        if handled:
            await gate.wait()  # the second batch hangs: the crash comes here
        handled.extend(m.value for m in batch)

    loop = ConsumeLoop(bus, [topic], "g", handler, batch_size=5)
    await loop.start()
    await _until(lambda: loop.processed >= 5)
    await loop.abort()
    rest = await _drain_from_committed(bus, topic, "g")
    assert len(rest) == 15  # the first committed batch is not redelivered; the rest is
    assert set(rest).isdisjoint(handled)


async def test_cancel_and_wait_ends_a_task_that_swallows_a_cancellation() -> None:
    # What asyncio.wait_for does in Python 3.11 when the cancellation lands as the awaited call
    # completes, or a retry loop that catches too much: the first cancel is lost.
    swallowed = 0

    async def retry_loop() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed == 0:
                    swallowed += 1
                    continue
                raise

    task = asyncio.create_task(retry_loop())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, recancel_s=0.05), 5)
    assert task.cancelled()
    assert swallowed == 1


async def test_one_poison_message_is_bisected_out_and_the_rest_of_the_batch_goes_on(
    bus: Bus,
) -> None:
    """Whatever the store refuses in one message (here a handler that fails on message 37 like a
    database refusing a value) dead-letters that message; the other 99 are handled, the loop
    stays ready and commits past it."""
    topic, group = f"t-{uuid.uuid4().hex}", "g"
    await _produce(bus, topic, 100)
    handled: list[bytes] = []
    calls = 0
    poisoned: list[tuple[bytes, str]] = []

    async def handler(batch: Sequence[Message]) -> None:
        nonlocal calls
        calls += 1
        if any(m.value == b"37" for m in batch):
            raise OverflowError("value out of int32 range")  # the whole transaction rolls back
        handled.extend(m.value for m in batch)

    async def on_poison(msg: Message, exc: Exception) -> None:
        poisoned.append((msg.value, str(exc)))

    loop = ConsumeLoop(
        bus, [topic], group, handler, retry_initial_s=0.01, on_poison=on_poison, batch_size=100
    )
    await loop.start()
    await _until(lambda: len(handled) + len(poisoned) >= 100)
    assert loop.ready() is None
    await loop.stop()
    assert poisoned == [(b"37", "value out of int32 range")]
    assert sorted(handled, key=int) == [str(i).encode() for i in range(100) if i != 37]
    assert calls < 40  # bisection, not one call per message
    assert await _drain_from_committed(bus, topic, group) == []


async def test_a_systematic_fault_stops_instead_of_dead_lettering_everything(bus: Bus) -> None:
    topic = f"t-{uuid.uuid4().hex}"
    await _produce(bus, topic, 30)
    poisoned: list[bytes] = []

    async def handler(batch: Sequence[Message]) -> None:
        raise KeyError("bug")

    async def on_poison(msg: Message, exc: Exception) -> None:
        poisoned.append(msg.value)

    loop = ConsumeLoop(
        bus,
        [topic],
        "g",
        handler,
        retry_initial_s=0.001,
        max_unexpected_failures=2,
        on_poison=on_poison,
        max_consecutive_poison=4,
    )
    await loop.start()
    await _until(lambda: loop.ready() is not None)
    assert "systematic" in (loop.ready() or "")
    await loop.stop()
    assert len(poisoned) == 3


async def test_consuming_dead_letters_poison_to_the_dlq_by_default(bus: Bus) -> None:
    topic = f"t-{uuid.uuid4().hex}"
    await _produce(bus, topic, 10)
    handled: list[bytes] = []

    async def handler(batch: Sequence[Message]) -> None:
        if any(m.value == b"4" for m in batch):
            raise ValueError("cannot store this")
        handled.extend(m.value for m in batch)

    dlq = await bus.consumer([topics.DLQ], f"dlq-{uuid.uuid4().hex}")
    async with consuming(bus, [topic], "billing", handler, batch_size=10) as loop:
        loop.retry_initial_s = 0.001
        await _until(lambda: len(handled) == 9)
        letters = await dlq.getmany(timeout_s=5, max_records=10)
    assert len(letters) == 1
    letter = DeadLetter.model_validate_json(letters[0].value)
    assert (letter.stage, letter.error, letter.raw_value) == ("billing", "poison", "4")
    assert "cannot store this" in letter.reason
    assert letter.topic == topic


@pytest.mark.parametrize("gather_s", [60.0, 0.0])
async def test_a_short_fetch_is_topped_up_before_the_batch_is_handled(
    bus: Bus, gather_s: float
) -> None:
    """Issue 15: a fetch of fewer than batch_size messages waits (up to gather_s) for more, so
    a trickle is handled in full batches; gather_s=0 handles what each fetch returned."""
    topic = f"t-{uuid.uuid4().hex}"
    await _produce(bus, topic, 1)
    batches: list[list[bytes]] = []

    async def handler(batch: Sequence[Message]) -> None:
        batches.append([m.value for m in batch])

    loop = ConsumeLoop(bus, [topic], "g", handler, batch_size=5, gather_s=gather_s)
    await loop.start()
    # The first message was fetched (nothing left to fetch), then four more arrive.
    await _until(lambda: loop._consumer is not None and not any(loop._consumer.lag().values()))
    await bus.producer.send_many(
        topic, [Record(value=str(i).encode(), key=b"0") for i in range(1, 5)]
    )
    await _until(lambda: sum(len(b) for b in batches) == 5)
    await loop.stop()
    if gather_s:
        # Full at five: handled at once, long before gather_s.
        assert batches == [[b"0", b"1", b"2", b"3", b"4"]]
    else:
        assert batches[0] == [b"0"]


async def test_fault_injection_holds_a_durable_batch_before_its_offsets_are_committed(
    bus: Bus, tmp_path: Path
) -> None:
    """CDRFLOW_FAULT_HOLD_DIR (crash tests): armed with 7, the loop handles batches of 5 and
    stops after the second (10 messages) is durable, before committing it; a crash there
    redelivers that batch. Once the arm file is gone a loop goes on and commits."""
    topic = f"t-{uuid.uuid4().hex}"
    await _produce(bus, topic, 20)
    handled: list[bytes] = []

    async def handler(batch: Sequence[Message]) -> None:
        handled.extend(m.value for m in batch)

    arm, held = tmp_path / "g.arm", tmp_path / "g.held"
    arm.write_text("7")
    loop = ConsumeLoop(bus, [topic], "g", handler, batch_size=5, hold_dir=tmp_path)
    await loop.start()
    await _until(held.exists)
    state = json.loads(held.read_text())
    assert (state["pid"], state["group"], state["processed"]) == (os.getpid(), "g", 10)
    assert len(handled) == 10  # durable (the handler returned) …
    await loop.abort()  # … and a crash here: only the first batch was committed
    rest = await _drain_from_committed(bus, topic, "g")
    assert sorted(rest, key=int) == sorted(
        set(map(str.encode, map(str, range(20)))) - set(handled[:5]), key=int
    )
    arm.unlink()
    held.unlink()  # a killed process leaves it behind
    handled.clear()
    loop = ConsumeLoop(bus, [topic], "g", handler, batch_size=5, hold_dir=tmp_path)
    await loop.start()
    await _until(lambda: len(handled) == 15)
    await loop.stop()
    assert not held.exists()  # not armed: never held
    assert await _drain_from_committed(bus, topic, "g") == []

"""The spool's log and record format and their promises: what ``append`` returned for is read
back intact and in order after a restart, a torn tail is skipped (never misread), fsyncs are
shared by concurrent appends, the size is bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cdr_ingest.spool.codec import SpooledRecord, encode, read_segment
from cdr_ingest.spool.segment_log import SEGMENT_SUFFIX, Spool, SpoolFull


async def _drain_all(spool: Spool) -> list[SpooledRecord]:
    out: list[SpooledRecord] = []
    while (batch := await spool.peek(max_records=100, max_bytes=1 << 20)) is not None:
        out += batch.records
        await spool.ack(batch)
    return out


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SEGMENT_SUFFIX}"))


async def test_round_trip_across_a_restart_keeps_every_record_in_order(tmp_path: Path) -> None:
    values = [b"", b"x", b"\x00" * 70_000, "é ünïcode".encode(), b"y" * 3]
    keys: list[bytes | None] = [None, b"call-1", b"", b"call-2", None]
    spool = await Spool(tmp_path, max_bytes=1 << 24).open()
    for value, key in zip(values, keys, strict=True):
        await spool.append(value, key)
    assert spool.depth == 5
    await spool.close()

    reopened = await Spool(tmp_path, max_bytes=1 << 24).open()
    assert reopened.depth == 5
    assert reopened.oldest_age_s() < 60
    records = await _drain_all(reopened)
    assert [r.value for r in records] == values
    assert [r.key for r in records] == keys
    assert reopened.depth == 0
    assert reopened.empty
    await reopened.close()
    assert _segments(tmp_path) == []  # a fully drained segment is deleted


@pytest.mark.parametrize("cut", [1, 2, 5, 9, 10, 11, 30, -1])
async def test_a_torn_last_record_is_skipped_and_never_misread(tmp_path: Path, cut: int) -> None:
    spool = await Spool(tmp_path, max_bytes=1 << 24).open()
    for i in range(3):
        await spool.append(f"record-{i}".encode() * 5, b"k")
    await spool.close()
    (segment,) = _segments(tmp_path)
    intact = segment.stat().st_size
    # A crash in the middle of the next append: only part of its frame reached the disk.
    frame = encode(SpooledRecord(b"never acknowledged" * 4, b"k", 0.0))
    with segment.open("ab") as f:
        f.write(frame[:cut] if cut > 0 else frame[:-1])

    reopened = await Spool(tmp_path, max_bytes=1 << 24).open()
    assert reopened.depth == 3
    assert segment.stat().st_size == intact  # truncated back to the intact part
    records = await _drain_all(reopened)
    assert [r.value for r in records] == [f"record-{i}".encode() * 5 for i in range(3)]
    await reopened.close()


async def test_a_flipped_bit_in_the_last_record_fails_its_checksum(tmp_path: Path) -> None:
    spool = await Spool(tmp_path, max_bytes=1 << 24).open()
    await spool.append(b"first", None)
    await spool.append(b"second", None)
    await spool.close()
    (segment,) = _segments(tmp_path)
    data = bytearray(segment.read_bytes())
    data[-2] ^= 0x01  # inside the value of the last record
    segment.write_bytes(bytes(data))
    records, end = read_segment(bytes(data))
    assert [r.value for r in records] == [b"first"]
    assert end < len(data)
    reopened = await Spool(tmp_path, max_bytes=1 << 24).open()
    assert [r.value for r in await _drain_all(reopened)] == [b"first"]
    await reopened.close()


async def test_restart_never_appends_to_an_old_segment_and_keeps_order(tmp_path: Path) -> None:
    first = await Spool(tmp_path, max_bytes=1 << 24).open()
    for i in range(10):
        await first.append(b"a%d" % i)
    batch = await first.peek(max_records=4, max_bytes=1 << 20)
    assert batch is not None
    await first.ack(batch)  # 4 drained, then the process stops before the rest
    await first.close()

    second = await Spool(tmp_path, max_bytes=1 << 24).open()
    for i in range(5):
        await second.append(b"b%d" % i)
    assert len(_segments(tmp_path)) == 2
    values = [r.value for r in await _drain_all(second)]
    # At least once: the acknowledged part of an undeleted segment may come again, then the rest
    # of it, then what came after the restart, all in order.
    assert values == [b"a%d" % i for i in range(10)] + [b"b%d" % i for i in range(5)]
    await second.close()


async def test_concurrent_appends_share_fsyncs_and_keep_their_order(tmp_path: Path) -> None:
    spool = await Spool(tmp_path, max_bytes=1 << 26, segment_bytes=64 * 1024).open()
    n = 400
    for wave in range(4):  # four waves of concurrent posts
        await asyncio.gather(
            *(
                spool.append(b"%05d" % i + b"." * 1000, b"k")
                for i in range(wave * 100, wave * 100 + 100)
            )
        )
    assert spool.depth == n
    assert spool.commits < n / 4, f"{spool.commits} fsyncs for {n} concurrent appends"
    assert len(_segments(tmp_path)) > 1  # rotated at 64 KiB
    values = [r.value[:5] for r in await _drain_all(spool)]
    assert values == [b"%05d" % i for i in range(n)]
    assert _segments(tmp_path) == []
    assert spool.size_bytes == 0
    await spool.close()


async def test_a_full_spool_refuses_appends(tmp_path: Path) -> None:
    spool = await Spool(tmp_path, max_bytes=1024 * 1024).open()
    value = b"z" * 100_000
    accepted = 0
    while accepted < 20:
        try:
            await spool.append(value)
        except SpoolFull:
            break
        accepted += 1
    assert accepted == 10
    assert spool.full()
    assert spool.size_bytes <= 1024 * 1024
    await spool.close()
    reopened = await Spool(tmp_path, max_bytes=1024 * 1024).open()
    assert reopened.depth == accepted  # what was refused was never written
    await reopened.close()


async def test_close_with_an_append_in_flight_writes_it_and_returns(tmp_path: Path) -> None:
    """``close`` while a post's record is queued for the writer (ingest stopping with a post in
    flight): the record is written and acknowledged, and ``close`` returns. It used to wait
    forever: the writer took the one wake-up for the batch and then waited for another."""
    spool = await Spool(tmp_path, max_bytes=1 << 20).open()
    append = asyncio.create_task(spool.append(b"in flight", b"k"))
    await asyncio.sleep(0)  # queued, not yet written
    async with asyncio.timeout(5):
        await spool.close()
    await append  # acknowledged: durable
    reopened = await Spool(tmp_path, max_bytes=1 << 20).open()
    try:
        assert reopened.depth == 1
    finally:
        await reopened.close()

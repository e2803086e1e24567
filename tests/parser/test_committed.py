"""``cdr_parser.service._committed``: a batch's store and the count of its outcomes run to their
end together even when the consumer is cancelled between them (``ConsumeLoop.abort`` after
PostgreSQL committed, while the commit's reply or the connection's return to the pool was still
awaited). Otherwise the batch is stored uncounted and its redelivery counts it as duplicates
(ci-alone: ``test_parser_aborted_mid_stream_loses_and_duplicates_nothing`` counted 1,900 of
2,000)."""

from __future__ import annotations

import asyncio

import pytest

from cdr_parser.service import _committed


async def test_a_cancelled_caller_still_lets_the_store_commit_and_count() -> None:
    steps: list[str] = []
    committed = asyncio.Event()

    async def store_and_count() -> int:
        steps.append("committed")
        committed.set()
        await asyncio.sleep(0.05)  # the commit's reply, the connection back to the pool
        steps.append("counted")
        return 100

    caller = asyncio.create_task(_committed(store_and_count()))
    await committed.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller  # the consumer stops at once
    await asyncio.sleep(0.2)
    assert steps == ["committed", "counted"]


async def test_the_result_and_a_failure_reach_a_caller_that_waits() -> None:
    async def ok() -> int:
        await asyncio.sleep(0)
        return 7

    async def fails() -> int:
        await asyncio.sleep(0)
        raise RuntimeError("the database went away")

    assert await _committed(ok()) == 7
    with pytest.raises(RuntimeError, match="went away"):
        await _committed(fails())

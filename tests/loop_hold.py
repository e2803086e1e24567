"""How long the event loop was held: another task's longest wait for its next turn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Held:
    longest_s = 0.0


@asynccontextmanager
async def loop_hold() -> AsyncIterator[Held]:
    """While the block runs, a ticker task yields in a loop and records the longest time one of
    its ``sleep(0)`` took: the longest stretch something else kept the loop."""
    held = Held()
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0)
            held.longest_s = max(held.longest_s, time.perf_counter() - before)

    task = asyncio.create_task(ticker())
    try:
        yield held
    finally:
        done.set()
        await task

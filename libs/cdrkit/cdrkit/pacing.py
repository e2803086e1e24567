"""Long synchronous stretches of a batch handler give the event loop back now and then.

In ``cdrflow run`` every service shares one event loop. A parser batch of ~110 FreeSWITCH CDRs
decodes and maps for ~30 ms without awaiting anything (up to 140 ms measured), and every post
that arrives meanwhile waits for it, at each of the few loop turns a post takes (read, publish,
the log's fsync coming back, the answer): that was most of the all-in-one's ack p99
(docs/performance.md, fifth round, h5allinone). A handler's per-message loop awaits
``Slicer.tick()``, which costs one clock read until ``SLICE_S`` has passed since the last
yield, and then yields once (``asyncio.sleep(0)``): whatever is ready runs (posts answered, the
log's writes completed) and the batch goes on where it was. The batch stays one batch: one
transaction, one publish, one offset commit, so the batching gains are kept.

A yield is only a point where other tasks may run, as every ``await`` in a handler already is;
the handlers keep their per-batch state in locals, and a cancellation there (a consumer
aborted) is handled as at any other ``await``.
"""

from __future__ import annotations

import asyncio
import time

# At most this long (seconds) between yields of a sliced loop. 2 ms: a post's loop turns wait
# for a few ms at most. A tick that does not yield costs ~0.2 µs, a yield (one loop turn) ~1.4 µs
# on uvloop; ~120 yields a second in ``bench e2e allinone`` (docs/performance.md).
SLICE_S = 0.002


class Slicer:
    """Yields to the event loop from a synchronous loop once ``budget_s`` (default ``SLICE_S``,
    read when the slicer is made) has passed since it was made or last yielded."""

    __slots__ = ("_budget", "_until", "yields")

    def __init__(self, budget_s: float | None = None) -> None:
        self._budget = SLICE_S if budget_s is None else budget_s
        self._until = time.perf_counter() + self._budget
        self.yields = 0

    async def tick(self) -> None:
        """Yield if the slice is used up (one clock read when it is not)."""
        if time.perf_counter() >= self._until:
            await asyncio.sleep(0)
            self.yields += 1
            self._until = time.perf_counter() + self._budget

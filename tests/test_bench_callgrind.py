"""``bench.callgrind``: each region's count read from its own dump, and instructions per item."""

from __future__ import annotations

import shutil

import pytest

from bench.callgrind import count, n_and_2n, per_item, region

# A child whose regions cost very different amounts, in an order where a dump read one off (the
# gap before or after a region, or the next region) shows: ~440 instructions an iteration.
CHILD = """
from bench.callgrind import n_and_2n, region

def loop(k):
    total = 0
    for i in range(k * 1000):
        total += i

n_and_2n([("loop", loop), ("nothing", lambda k: None)], 10)
with region("big"):
    loop(100)
with region("empty"):
    pass
"""


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_each_region_is_counted_from_its_own_dump() -> None:
    counts = count("-c", CHILD)
    assert list(counts) == ["loop@10", "loop@20", "nothing@10", "nothing@20", "big", "empty"]
    one, two, big = counts["loop@10"], counts["loop@20"], counts["big"]
    assert one > 3_000_000
    assert 1.95 < two / one < 2.05
    assert 9 < big / one < 12  # ten times the iterations (larger ints: a little more each)
    for cheap in ("nothing@10", "nothing@20", "empty"):
        assert counts[cheap] < 20_000, cheap
    per = per_item({k: v for k, v in counts.items() if "@" in k})
    assert set(per) == {"loop", "nothing"}
    assert abs(per["loop"] * 10 - one) < one * 0.02  # an item: a tenth of loop@10
    assert abs(per["nothing"]) < 1_000


def test_per_item_is_the_difference_of_n_and_2n_over_n() -> None:
    counts = {"a@50": 1_000, "a@100": 6_000, "b@100": 7, "b@50": 2}
    assert per_item(counts) == {"a": 100.0, "b": 0.1}
    assert per_item({"a@50": 1, "a@99": 2, "c@3": 5}) == {}


def test_without_callgrind_regions_only_run_the_work() -> None:
    ran = []
    n_and_2n([("x", ran.append)], 3)
    with region("y"):
        ran.append(0)
    assert ran == [3, 6, 0]

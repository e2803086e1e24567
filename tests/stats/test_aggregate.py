"""Aggregating calls into bucket cells."""

from __future__ import annotations

from cdr_stats.aggregate import Aggregate
from cdr_stats.call_fields import Call, decode_call
from cdrmodel import CDR
from tests.stats.conftest import make_cdr


def _call(cdr: CDR) -> Call:
    return decode_call(cdr.to_json())


def test_moments_of_a_bucket() -> None:
    agg = Aggregate()
    for billsec in (0, 4, 10):
        agg.add_call(_call(make_cdr(1_700_000_100, billsec=billsec, carrier="c")))
    cell = agg.cells[(1_700_000_100 // 360 * 360, "carrier", "c")]
    assert cell["attempts"][0] == 3
    assert cell["answered"][0] == 2
    assert cell["zero_duration"][0] == 1
    assert cell["short_calls"][0] == 1
    assert cell["billsec"] == [3, 14, 116, 0, 10]

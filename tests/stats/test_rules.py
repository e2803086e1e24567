"""Alert rules: minimum sample, once per bucket."""

from __future__ import annotations

from cdr_stats.call_fields import Call, decode_call
from cdr_stats.rules import evaluate
from cdr_stats.settings import DEFAULT_RULES
from cdrmodel import CDR


def _call(cdr: CDR) -> Call:
    return decode_call(cdr.to_json())


def test_threshold_rules_need_the_minimum_sample_and_fire_per_bucket() -> None:
    def cell(attempts: int, zero: int, answered: int, five: int) -> dict[str, list[float]]:
        return {
            "attempts": [attempts],
            "zero_duration": [zero],
            "answered": [answered],
            "sip_class:5xx": [five],
        }

    totals = {
        (360, "carrier", "bad"): cell(20, 15, 5, 10),
        (360, "carrier", "small"): cell(19, 19, 0, 19),
        (360, "carrier", "good"): cell(100, 10, 90, 1),
        (360, "all", ""): cell(139, 44, 95, 30),
    }
    alerts = evaluate(DEFAULT_RULES, totals)
    assert sorted((a.labels["rule"], a.labels.get("carrier")) for a in alerts) == [
        ("sip_5xx", "bad"),
        ("zero_duration_burst", "bad"),
    ]
    assert len({a.dedup_key for a in alerts}) == 2

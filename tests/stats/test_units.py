"""Pure parts of stats: bucket arithmetic, decoding, the built-in plugins on real CDRs, rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cdr_stats.aggregate import Aggregate
from cdr_stats.call_fields import BadCall, Call, bucket_of, decode_call
from cdr_stats.plugins import PluginContext, PrefixLists, fraud_prefixes, totals, unexpected_sip
from cdr_stats.rules import evaluate
from cdr_stats.settings import DEFAULT_RULES
from cdrmodel import CDR
from tests.stats.conftest import PREFIX_FILE, make_cdr, real_cdrs


def _call(cdr: CDR) -> Call:
    return decode_call(cdr.to_json())


def test_a_call_ending_exactly_on_a_multiple_of_360_s_opens_the_next_bucket() -> None:
    edge = 1_700_000_000 - 1_700_000_000 % 360
    assert bucket_of(edge) == edge
    assert bucket_of(edge - 0.000001) == edge - 360
    assert bucket_of(edge + 359.999) == edge
    assert _call(make_cdr(edge)).bucket == edge
    assert _call(make_cdr(edge - 1)).bucket == edge - 360


def test_real_cdrs_decode_to_their_end_time_bucket() -> None:
    for cdr in real_cdrs().values():
        call = _call(cdr)
        assert cdr.end_time is not None
        assert call.end_epoch == cdr.end_time.timestamp()
        assert call.bucket == int(cdr.end_time.timestamp()) // 360 * 360
        assert call.answered == (cdr.disposition == "answered")


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"[1]",
        b'{"call_id": ""}',
        b'{"call_id": "x", "end_time": "yesterday"}',
        b'{"call_id": "x", "end_time": "2024-01-01T00:00:00"}',
        b'{"call_id": "x", "end_time": "2024-01-01T00:00:00Z", "billsec_s": "12"}',
        b'{"call_id": "x", "end_time": "2024-01-01T00:00:00Z", "sip_code": 42}',
    ],
)
def test_undecodable_messages_are_refused_with_a_reason(value: bytes) -> None:
    with pytest.raises(BadCall):
        decode_call(value)


def test_no_end_time_uses_start_plus_duration() -> None:
    call = decode_call(b'{"call_id": "x", "start_time": "2024-01-01T00:05:00Z", "duration_s": 61}')
    assert call.end_epoch == datetime(2024, 1, 1, 0, 6, 1, tzinfo=UTC).timestamp()
    assert call.bucket == datetime(2024, 1, 1, 0, 6, tzinfo=UTC).timestamp()


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


def test_totals_counts_real_cdrs_per_disposition() -> None:
    seen = []
    for cdr in real_cdrs().values():
        ctx = PluginContext(0)
        totals(_call(cdr), ctx)
        seen += ctx.increments
    assert sorted(seen) == [
        ("plugin:disposition.answered", 1),
        ("plugin:disposition.answered", 1),
        ("plugin:disposition.cancelled", 1),
        ("plugin:disposition.failed", 1),
    ]


def test_unexpected_sip_codes_on_real_cdrs() -> None:
    """The default expected set (200, 404, 486, 487) covers every real code: no alert. With
    only 200 expected, the real ORIGINATOR_CANCEL leg (SIP 487 on carrier carlos) alerts."""
    cdrs = real_cdrs()
    default = unexpected_sip(frozenset({200, 404, 486, 487}))
    for cdr in cdrs.values():
        ctx = PluginContext(0)
        default(_call(cdr), ctx)
        assert ctx.alerts == []
    strict = unexpected_sip(frozenset({200}))
    raised = []
    for cdr in cdrs.values():
        ctx = PluginContext(7)
        strict(_call(cdr), ctx)
        raised += ctx.alerts
    assert [(a.kind, a.labels, a.bucket) for a in raised] == [
        ("unexpected_sip_code", {"carrier": "carlos", "sip_code": "487"}, 7)
    ]
    assert "SIP 487 on carrier carlos" in raised[0].text


def test_fraud_prefix_lists_in_the_ccnq3_format() -> None:
    lists = PrefixLists.load(PREFIX_FILE)
    # The file's own self-test (see its _note).
    assert lists.match("87382738392") == ("873", 0)
    assert lists.match("15195551234") == ("1519555", 10)
    assert lists.match("+19077521234")[1] == 29  # type: ignore[index]
    assert lists.match("0033698123456")[1] == 60  # type: ignore[index]
    assert lists.match("12177210123") is None


def test_fraud_prefixes_on_a_real_answered_cdr() -> None:
    """The real cgrates call (68 billed seconds), dialled to an alert10 prefix, alerts; the same
    call billed 5 s does not; the real CDRs as they are dial no listed prefix."""
    plugin = fraud_prefixes(PrefixLists.load(PREFIX_FILE))
    cdrs = real_cdrs()
    for cdr in cdrs.values():
        ctx = PluginContext(0)
        plugin(_call(cdr), ctx)
        assert ctx.alerts == []
    answered = cdrs["freeswitch_json_cdr_cgrates_answered.json"]
    long_call = answered.model_copy(update={"callee_number": "15195551234"})
    ctx = PluginContext(0)
    plugin(_call(long_call), ctx)
    assert [a.labels["prefix"] for a in ctx.alerts] == ["1519555"]
    assert ctx.increments == [("plugin:fraud_prefix", 1)]
    assert answered.end_time is not None
    short = long_call.model_copy(
        update={"billsec_s": 5, "answer_time": answered.end_time - timedelta(seconds=5)}
    )
    ctx = PluginContext(0)
    plugin(_call(short), ctx)
    assert ctx.alerts == []


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

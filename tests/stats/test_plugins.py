"""The built-in plugins on real CDRs."""

from __future__ import annotations

from datetime import timedelta

from cdr_stats.call_fields import Call, decode_call
from cdr_stats.plugins import PluginContext, PrefixLists, fraud_prefixes, totals, unexpected_sip
from cdrmodel import CDR
from tests.stats.conftest import PREFIX_FILE, real_cdrs


def _call(cdr: CDR) -> Call:
    return decode_call(cdr.to_json())


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

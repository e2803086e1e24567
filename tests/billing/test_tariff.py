"""Rating rules, with every expected amount worked out by hand from the tariff rules."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest

from cdr_billing.rating import CallFacts, Unpriced, pick_version, rate_call
from cdr_billing.tariff import (
    Band,
    Destination,
    InvalidTariff,
    Segment,
    Tariff,
    _local,
    default_tariff,
    validate,
)

DEFAULT = default_tariff("UTC")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def call(
    start: str,
    end: str | None,
    *,
    callee: str = "1133334444",
    answer: str | None = None,
    disposition: str | None = "answered",
    billsec: int | None = None,
) -> CallFacts:
    return CallFacts(
        call_id="c1",
        subscriber="11999998888",
        source="call.event",
        caller_number="11999998888",
        callee_number=callee,
        account=None,
        start_time=at(start),
        answer_time=at(answer) if answer else None,
        end_time=at(end) if end else None,
        duration_s=None,
        billsec_s=billsec,
        disposition=disposition,
    )


def amount(c: CallFacts, t: Tariff = DEFAULT) -> Decimal:
    return rate_call(c, t).amount


def test_worked_example_is_54_cents() -> None:
    # 21:57:13 → 22:00:00 is 167 standard seconds = 2 completed cycles (0.18) + 0.36 standing.
    rated = rate_call(call("2018-02-28 21:57:13", "2018-02-28 22:17:53"), DEFAULT)
    assert rated.amount == Decimal("0.54")
    ex = rated.explanation
    assert [(s["band"], s["seconds"]) for s in ex["segments"]] == [
        ("standard", 167),
        ("reduced", 1073),
    ]
    std = ex["bands"][0]
    assert (std["cycles"], std["billed_seconds"], std["unit_price"]) == (2, 120, "0.09")
    assert ex["standing_charge"] == "0.36"
    assert ex["tariff"]["version"] == 1


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # starts exactly at 06:00:00: 10 standard minutes → 0.36 + 0.90
        ("2024-03-05 06:00:00", "2024-03-05 06:10:00", "1.26"),
        # ends exactly at 06:00:00: all reduced → standing only
        ("2024-03-05 05:50:00", "2024-03-05 06:00:00", "0.36"),
        # ends exactly at 22:00:00: 5 standard minutes → 0.36 + 0.45
        ("2024-03-05 21:55:00", "2024-03-05 22:00:00", "0.81"),
        # starts exactly at 22:00:00: all reduced
        ("2024-03-05 22:00:00", "2024-03-05 22:30:00", "0.36"),
        # 05:59:30 → 06:01:29: 30 s reduced, 89 s standard = 1 cycle → 0.45
        ("2024-03-05 05:59:30", "2024-03-05 06:01:29", "0.45"),
        # 59 s in standard time: no completed cycle
        ("2024-03-05 10:00:00", "2024-03-05 10:00:59", "0.36"),
    ],
)
def test_band_edges(start: str, end: str, expected: str) -> None:
    assert amount(call(start, end)) == Decimal(expected)


def test_call_across_midnight() -> None:
    # 21:50 → 06:05 next day: 10 standard min before 22:00, 5 after 06:00 → 15 cycles.
    rated = rate_call(call("2024-03-05 21:50:00", "2024-03-06 06:05:00"), DEFAULT)
    assert rated.amount == Decimal("0.36") + 15 * Decimal("0.09") == Decimal("1.71")
    assert [s["band"] for s in rated.explanation["segments"]] == ["standard", "reduced", "standard"]
    # the reduced night is one segment across midnight
    assert rated.explanation["segments"][1]["seconds"] == 8 * 3600


def test_call_longer_than_24_hours() -> None:
    # Mon 10:00 → Wed 12:00 (50 h): standard = 12 h + 16 h + 6 h = 34 h = 2040 cycles.
    rated = rate_call(call("2024-03-04 10:00:00", "2024-03-06 12:00:00"), DEFAULT)
    assert rated.amount == Decimal("0.36") + 2040 * Decimal("0.09") == Decimal("183.96")
    assert rated.billed_s == 50 * 3600


def test_leap_day() -> None:
    # 2024-02-29 21:00 → 2024-03-01 07:00: 60 + 60 standard minutes.
    assert amount(call("2024-02-29 21:00:00", "2024-03-01 07:00:00")) == Decimal("11.16")
    # a whole leap day, midnight to midnight: 16 h standard = 960 cycles
    assert amount(call("2024-02-29 00:00:00", "2024-03-01 00:00:00")) == Decimal("86.76")


def test_not_answered_is_a_zero_charge() -> None:
    rated = rate_call(
        call("2024-03-05 10:00:00", "2024-03-05 10:00:30", disposition="busy"), DEFAULT
    )
    assert (rated.outcome, rated.amount) == ("not_answered", Decimal("0.00"))
    assert "not answered" in rated.explanation["reason"]
    zero = call("2024-03-05 10:00:00", "2024-03-05 10:00:30", disposition=None, billsec=0)
    assert rate_call(zero, DEFAULT).outcome == "not_answered"


def test_freeswitch_call_is_priced_from_answer_time() -> None:
    # rang 40 s, answered 10:00:40, ended 10:03:10 → 150 s billed = 2 cycles
    c = call("2024-03-05 10:00:00", "2024-03-05 10:03:10", answer="2024-03-05 10:00:40")
    rated = rate_call(c, DEFAULT)
    assert (rated.amount, rated.billed_s) == (Decimal("0.54"), 150)


def test_no_end_time_is_unpriced() -> None:
    with pytest.raises(Unpriced) as err:
        rate_call(call("2024-03-05 10:00:00", None), DEFAULT)
    assert err.value.code == "no_end_time"


def tariff(**kw: object) -> Tariff:
    base: dict[str, object] = {
        "name": "t",
        "version": 1,
        "effective_from": at("2020-01-01 00:00:00"),
        "currency": "BRL",
        "timezone": "UTC",
        "standing_charge": Decimal("0"),
        "minimum_charge": Decimal("0"),
        "unit_s": 60,
        "first_increment_s": 30,
        "next_increment_s": 6,
        "rounding": "up",
        "bands": [Band("all", ("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "00:00", "24:00")],
        "destinations": [
            Destination("", "any", {"all": Decimal("0.60")}),
            Destination("55", "Brazil", {"all": Decimal("1.20")}),
            Destination("5511", "São Paulo", {"all": Decimal("0.30")}, Decimal("0.10")),
        ],
    }
    base.update(kw)
    return Tariff(**base)  # type: ignore[arg-type]


def test_increments_30_6_rounding_up_and_minimum() -> None:
    t = tariff()
    validate(t)
    # 10 s → first increment 30 s at 1.20/min = 0.60
    assert amount(
        call("2024-03-05 10:00:00", "2024-03-05 10:00:10", callee="5521999"), t
    ) == Decimal("0.60")
    # 31 s → 30 + 6 = 36 s at 1.20/min = 0.72
    assert amount(
        call("2024-03-05 10:00:00", "2024-03-05 10:00:31", callee="5521999"), t
    ) == Decimal("0.72")
    # longest prefix 5511: 36 s at 0.30/min = 0.18 + its own standing 0.10
    assert amount(call("2024-03-05 10:00:00", "2024-03-05 10:00:31", callee="+55 11 3333"), t) == (
        Decimal("0.28")
    )
    with_min = tariff(minimum_charge=Decimal("1.00"))
    rated = rate_call(call("2024-03-05 10:00:00", "2024-03-05 10:00:31", callee="5521"), with_min)
    assert rated.amount == Decimal("1.00")
    assert rated.explanation["minimum_applied"] is True


def test_one_second_increments_round_half_up_to_the_cent() -> None:
    t = tariff(first_increment_s=1, next_increment_s=1, rounding="down")
    # 61 s at 0.09/min = 0.0915 → 0.09; 95 s = 0.1425 → 0.14; 150 s at 0.09 = 0.225 → 0.23
    t9 = tariff(
        first_increment_s=1,
        next_increment_s=1,
        destinations=[Destination("", "any", {"all": Decimal("0.09")})],
    )
    assert amount(call("2024-03-05 10:00:00", "2024-03-05 10:01:01"), t9) == Decimal("0.09")
    assert amount(call("2024-03-05 10:00:00", "2024-03-05 10:02:30"), t9) == Decimal("0.23")
    assert amount(call("2024-03-05 10:00:00", "2024-03-05 10:00:01", callee="9"), t) == Decimal(
        "0.01"
    )


def test_timezone_of_the_bands() -> None:
    # São Paulo is UTC-3 (no DST since 2019): 00:57:13Z..01:17:53Z is 21:57:13..22:17:53 local.
    sp = default_tariff("America/Sao_Paulo")
    assert amount(call("2024-03-06 00:57:13", "2024-03-06 01:17:53"), sp) == Decimal("0.54")
    assert amount(call("2024-03-06 00:57:13", "2024-03-06 01:17:53")) == Decimal("0.36")


def test_weekday_bands_and_sunday_night_wrap() -> None:
    """Versions stored before the same_day rule (rules NULL) read bands as running into the
    next day: their meaning never changes under them."""
    weekdays = ("mon", "tue", "wed", "thu", "fri")
    t = tariff(
        overnight="next_day",
        first_increment_s=60,
        next_increment_s=60,
        rounding="down",
        bands=[
            Band("peak", weekdays, "08:00", "18:00"),
            Band("offpeak", weekdays, "18:00", "08:00"),  # Friday 18:00 → Saturday 08:00
            Band("weekend", ("sat",), "08:00", "24:00"),
            Band("weekend", ("sun",), "00:00", "08:00"),
            Band("weekend", ("sun",), "08:00", "08:00"),  # Sunday 08:00 → Monday 08:00
        ],
        destinations=[
            Destination(
                "", "any", {"peak": Decimal("1"), "offpeak": Decimal("0.5"), "weekend": Decimal(0)}
            )
        ],
    )
    validate(t)
    # Sun 2024-03-10 23:00 → Mon 08:30: 9 h weekend, 30 min peak → 30 x 1
    rated = rate_call(call("2024-03-10 23:00:00", "2024-03-11 08:30:00"), t)
    assert rated.amount == Decimal("30.00")
    assert [s["band"] for s in rated.explanation["segments"]] == ["weekend", "peak"]


@pytest.mark.parametrize(
    ("bands", "needle"),
    [
        ([Band("a", ("mon",), "00:00", "24:00")], "no band covers tue 00:00"),
        (
            [
                Band("a", ("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "00:00", "22:00"),
                Band("b", ("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "21:00", "00:00"),
            ],
            "overlaps",
        ),
        ([Band("a", ("monday",), "00:00", "24:00")], "is not a day"),
        ([Band("a", ("mon",), "25:00", "24:00")], "not a time of day"),
    ],
)
def test_bands_must_cover_the_week_once(bands: list[Band], needle: str) -> None:
    with pytest.raises(InvalidTariff) as err:
        validate(tariff(bands=bands, destinations=[Destination("", "", {"a": Decimal(1)})]))
    assert needle in err.value.detail


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"first_increment_s": 0}, "greater than 0"),
        ({"destinations": [Destination("", "", {"all": Decimal("-1")})]}, "negative"),
        ({"destinations": [Destination("", "", {})]}, "no price for band"),
        ({"destinations": [Destination("5x", "", {"all": Decimal(1)})]}, "digits"),
        ({"currency": "real"}, "ISO 4217"),
    ],
)
def test_invalid_tariffs_say_why(kw: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidTariff) as err:
        validate(tariff(**kw))
    assert needle in err.value.detail


def test_version_in_force_at_the_call_start() -> None:
    v1 = tariff(version=1, effective_from=at("2020-01-01 00:00:00"))
    v2 = tariff(version=2, effective_from=at("2024-03-01 00:00:00"))
    assert pick_version([v1, v2], at("2024-02-29 23:59:59")) is v1
    assert pick_version([v1, v2], at("2024-03-01 00:00:00")) is v2
    assert pick_version([v1, v2], at("2019-12-31 00:00:00")) is None


def test_100k_prefix_longest_match() -> None:
    """Longest-prefix lookup against a brute-force reference over 100,000 distinct prefixes and
    10,000 numbers: 5,000 that extend a prefix, 3,000 random ones, and 2,000 that no prefix
    matches (leading 0: every prefix starts 1-9). The reference scans, for each number, every
    two-digit prefix and every longer prefix sharing its first three digits (all prefixes have
    at least two, so none that could match is skipped): a linear scan, not the implementation's
    hash probing."""
    rng = random.Random(7)
    prefixes: set[str] = set()
    while len(prefixes) < 100_000:
        prefixes.add(str(rng.randrange(10**7, 10**8))[: rng.randint(2, 8)])
    dests = [Destination(p, p, {"all": Decimal(1)}) for p in prefixes]
    started = time.perf_counter()
    t = tariff(destinations=dests)
    assert time.perf_counter() - started < 5
    pool = sorted(prefixes)
    numbers = [rng.choice(pool) + str(rng.randrange(10**6)) for _ in range(5_000)]
    numbers += [str(rng.randrange(10**9, 10**11)) for _ in range(3_000)]
    numbers += ["0" + str(rng.randrange(10**9, 10**10)) for _ in range(2_000)]
    short = [p for p in prefixes if len(p) == 2]
    by_head: dict[str, list[str]] = {}
    for p in prefixes:
        if len(p) > 2:
            by_head.setdefault(p[:3], []).append(p)
    unmatched = 0
    for n in numbers:
        candidates = [*short, *by_head.get(n[:3], ())]
        want = max((p for p in candidates if n.startswith(p)), key=len, default=None)
        got = t.lookup(n)
        assert (got.prefix if got else None) == want, n
        unmatched += want is None
    assert len(numbers) == 10_000
    assert unmatched >= 2_000  # the leading-0 numbers, and any random one no prefix covers
    # exact checks of nesting
    nested = tariff(
        destinations=[
            Destination(p, p, {"all": Decimal(1)}) for p in ("", "5", "55", "5511", "551199")
        ]
    )
    for number, prefix in [("5511887", "5511"), ("5511999", "551199"), ("5599", "55"), ("1", "")]:
        found = nested.lookup(number)
        assert found is not None
        assert found.prefix == prefix


def test_band_boundaries_inside_a_dst_gap_bill_each_second_once() -> None:
    """Europe/Berlin skips 02:00-03:00 on 2024-03-31. With band boundaries at 02:30 (in the
    gap) and 03:00, the wall-clock pieces mapped to UTC overlapped, so the seconds between
    01:00Z and 01:30Z were billed in two bands: a 2-hour call was charged for 2.5 hours."""
    every = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    t = tariff(
        timezone="Europe/Berlin",
        first_increment_s=1,
        next_increment_s=1,
        rounding="down",
        bands=[
            Band("night", every, "22:00", "02:30"),
            Band("early", every, "02:30", "03:00"),
            Band("day", every, "03:00", "22:00"),
        ],
        destinations=[
            Destination(
                "", "any", {"night": Decimal("0"), "early": Decimal("0"), "day": Decimal("0.60")}
            )
        ],
    )
    validate(t)
    # 01:00 CET → 04:00 CEST: 7200 real seconds.
    rated = rate_call(call("2024-03-31 00:00:00", "2024-03-31 02:00:00"), t)
    segments = rated.explanation["segments"]
    assert sum(s["seconds"] for s in segments) == 7200
    assert sum(b["seconds"] for b in rated.explanation["bands"]) == 7200
    assert all(a["end"] == b["start"] for a, b in pairwise(segments))
    # priced from those seconds only: 0.60/min = 0.01/s in the day band, nothing at night
    day_s = sum(b["seconds"] for b in rated.explanation["bands"] if b["band"] == "day")
    assert 0 < day_s <= 3600
    assert rated.amount == Decimal(day_s) * Decimal("0.01")
    # an ordinary DST day (boundaries outside the gap) still splits at the local clock
    plain = default_tariff("Europe/Berlin")
    # 05:50 CEST → 06:10 CEST = 03:50Z → 04:10Z: 10 reduced minutes, 10 standard minutes
    assert amount(call("2024-03-31 03:50:00", "2024-03-31 04:10:00"), plain) == Decimal("1.26")


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


def operator_week(overnight: str = "same_day") -> Tariff:
    """What an operator writes: weekdays 06-22 normal, weekdays 22-06 reduced, weekend free."""
    return tariff(
        overnight=overnight,
        first_increment_s=60,
        next_increment_s=60,
        rounding="down",
        bands=[
            Band("normal", WEEKDAYS, "06:00", "22:00"),
            Band("reduced", WEEKDAYS, "22:00", "06:00"),
            Band("weekend", ("sat", "sun"), "00:00", "24:00"),
        ],
        destinations=[
            Destination(
                "", "any", {"normal": Decimal(1), "reduced": Decimal("0.5"), "weekend": Decimal(0)}
            )
        ],
    )


def test_band_across_midnight_means_the_listed_days_clock_hours() -> None:
    """ "Mon-Fri 22:00-06:00" covers Monday 00:00-06:00 and not Saturday 00:00-06:00: read as
    "into the next day" it left Monday's early hours uncovered and overlapped Saturday's."""
    t = operator_week()
    validate(t)
    # Mon 2024-03-11 03:00-04:00: reduced (60 x 0.5)
    assert amount(call("2024-03-11 03:00:00", "2024-03-11 04:00:00"), t) == Decimal("30.00")
    # Sat 2024-03-16 03:00-04:00: weekend (free band), not Friday's reduced night
    assert amount(call("2024-03-16 03:00:00", "2024-03-16 04:00:00"), t) == Decimal("0.00")
    # Fri 21:00 → Sat 01:00: 60 normal + 120 reduced + 60 weekend minutes
    rated = rate_call(call("2024-03-15 21:00:00", "2024-03-16 01:00:00"), t)
    assert rated.amount == Decimal("120.00")
    assert [s["band"] for s in rated.explanation["segments"]] == ["normal", "reduced", "weekend"]
    with pytest.raises(InvalidTariff) as err:
        validate(operator_week("next_day"))
    assert "no band covers mon 00:00 to mon 06:00" in err.value.detail


def test_on_net_extension_range_and_free_prefix() -> None:
    t = tariff(extension_ranges=("1000-1999",), free_prefixes=("0800",))
    validate(t)
    rated = rate_call(call("2024-03-05 10:00:00", "2024-03-05 10:05:00", callee="1003"), t)
    assert (rated.outcome, rated.amount) == ("free", Decimal(0))
    assert "1003 is in the extension range 1000-1999" in rated.explanation["reason"]
    rated = rate_call(call("2024-03-05 10:00:00", "2024-03-05 10:05:00", callee="08001234567"), t)
    assert rated.outcome == "free"
    assert "free prefix 0800" in rated.explanation["reason"]
    # same digits, other length; outside the range: priced
    for callee in ("10030", "2003", "999"):
        assert (
            rate_call(call("2024-03-05 10:00:00", "2024-03-05 10:05:00", callee=callee), t).outcome
            == "priced"
        )
    # an unanswered call to an extension is still "not answered"
    unanswered = call(
        "2024-03-05 10:00:00", "2024-03-05 10:00:10", callee="1003", disposition="no_answer"
    )
    assert rate_call(unanswered, t).outcome == "not_answered"


def test_default_tariff_leaves_extension_calls_free() -> None:
    rated = rate_call(call("2024-03-05 10:00:00", "2024-03-05 10:02:00", callee="1003"), DEFAULT)
    assert rated.outcome == "free"
    assert rated.amount == Decimal(0)
    assert amount(call("2024-03-05 10:00:00", "2024-03-05 10:02:00")) == Decimal("0.54")


@pytest.mark.parametrize("bad", ["1999-1000", "10x0-2000", "1000"])
def test_bad_extension_range_is_refused(bad: str) -> None:
    with pytest.raises(InvalidTariff) as err:
        tariff(extension_ranges=(bad,))
    assert "extension range" in err.value.detail


def _segments_without_cache(t: Tariff, begin: datetime, end: datetime) -> list[Segment]:
    """``Tariff.segments`` as it was before the day schedules were kept (issue 15, seventh
    round): every boundary made afresh from the local day."""
    out: list[Segment] = []
    if end <= begin:
        return out
    day = begin.astimezone(t.zone).date()
    last = end.astimezone(t.zone).date()
    while day <= last:
        for start_s, end_s, band in t._schedule[day.weekday()]:
            s = max(_local(day, start_s, t.zone), begin)
            e = min(_local(day, end_s, t.zone), end)
            if out:
                s = max(s, out[-1].end)
            if e <= s:
                continue
            if out and out[-1].band == band and out[-1].end == s:
                out[-1] = Segment(band, out[-1].start, e)
            else:
                out.append(Segment(band, s, e))
        day += timedelta(days=1)
    return out


@pytest.mark.parametrize("kept", [4096, 3])
def test_kept_day_schedules_cut_calls_as_made_afresh(
    kept: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls around DST changes (a gap and an overlap), midnight and band edges, in zones with
    and without DST, cut the same with the day schedules kept per version as made afresh, also
    when the kept days are dropped and made again (``kept`` = 3)."""
    monkeypatch.setattr("cdr_billing.tariff.DAYS_KEPT", kept)
    rng = random.Random(42)
    bands = [
        Band("day", ("mon", "tue", "wed", "thu", "fri"), "08:00", "00:30"),
        Band("night", ("mon", "tue", "wed", "thu", "fri"), "00:30", "08:00"),
        Band("weekend", ("sat", "sun"), "00:00", "24:00"),
    ]
    anchors = [
        datetime(2024, 3, 31, 0, 30, tzinfo=UTC),  # Europe/London springs forward at 01:00 UTC
        datetime(2024, 10, 27, 0, 30, tzinfo=UTC),  # and falls back at 01:00 UTC
        datetime(2018, 11, 4, 1, 30, tzinfo=UTC),  # America/Sao_Paulo's last DST start
        datetime(2026, 12, 3, 23, 0, tzinfo=UTC),
    ]
    for zone in ("Europe/London", "America/Sao_Paulo", "UTC", "Asia/Kolkata"):
        kept_t = _tariff(bands, zone)
        for _ in range(400):
            begin = rng.choice(anchors) + timedelta(seconds=rng.randrange(-2 * 86_400, 86_400))
            end = begin + timedelta(
                seconds=rng.choice([0, 1, 59, 3600, 86_400 * 3]) + rng.randrange(7200)
            )
            assert kept_t.segments(begin, end) == _segments_without_cache(
                _tariff(bands, zone), begin, end
            )
        assert len(kept_t._days) <= kept


def _tariff(bands: list[Band], zone: str) -> Tariff:
    return Tariff(
        name="t",
        version=1,
        effective_from=datetime(2000, 1, 1, tzinfo=UTC),
        currency="BRL",
        timezone=zone,
        standing_charge=Decimal(0),
        minimum_charge=Decimal(0),
        unit_s=60,
        first_increment_s=1,
        next_increment_s=1,
        rounding="up",
        bands=bands,
        destinations=[Destination("", "any", {b.name: Decimal(1) for b in bands})],
    )

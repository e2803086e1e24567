"""The charge's explanation is written as JSON text (``cdr_billing.rating._explanation_text``,
issue 15, eighth round) where it was a dict encoded by the column's JSON serializer: the text
must be json.dumps's of the dict the former code built, for every shape, and the bound value of
the charges' statements must be what it was. ``former_rate_call`` below is the former
``rate_call``, verbatim but for its name and what it returns."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from cdr_billing import rating
from cdr_billing.models import billing_calls, charges
from cdr_billing.rating import CallFacts, Unpriced, billed_interval, digits, rate_call
from cdr_billing.repository import _InsertIgnore, _StoreStatement
from cdr_billing.service import call_row, charge_row
from cdr_billing.tariff import CENT, DAYS, Band, Destination, Tariff, default_tariff
from cdrkit.db import ColumnArrays, create_engine


def former(*fields: Any) -> tuple[Any, ...]:
    return fields


def former_rate_call(call: CallFacts, tariff: Tariff) -> dict[str, Any]:
    """Price one call with one tariff version (see the module doc). ``Unpriced`` if it cannot."""
    head: dict[str, Any] = {
        "tariff": {
            "name": tariff.name,
            "version": tariff.version,
            "effective_from": tariff.effective_from.isoformat(),
            "currency": tariff.currency,
            "timezone": tariff.timezone,
        },
        "subscriber": call.subscriber,
        "callee": call.callee_number,
    }
    interval = billed_interval(call)
    zero = Decimal("0.00")
    if interval is None:
        when = call.end_time or call.start_time
        head.update(
            outcome="not_answered",
            reason=(
                f"not answered ({call.disposition or 'no answer time'}, "
                f"billsec {call.billsec_s if call.billsec_s is not None else 0}): no charge"
            ),
            amount="0.00",
        )
        return former(
            "not_answered", zero, tariff.currency, tariff.name, tariff.version, when, when, 0, head
        )
    begin, end = interval
    number = digits(call.callee_number)
    free = tariff.on_net(number)
    if free is not None:
        head.update(
            outcome="free",
            reason=f"{free}: no charge",
            interval={
                "begin": begin.isoformat(),
                "end": end.isoformat(),
                "seconds": int((end - begin).total_seconds()),
            },
            amount="0.00",
        )
        return former(
            "free",
            zero,
            tariff.currency,
            tariff.name,
            tariff.version,
            begin,
            end,
            int((end - begin).total_seconds()),
            head,
        )
    dest = tariff.lookup(number)
    if dest is None:
        raise Unpriced(
            f"no destination of tariff {tariff.name} v{tariff.version} matches the called "
            f"number {call.callee_number!r}",
            "no_destination",
        )
    segments = tariff.segments(begin, end)
    per_band: dict[str, int] = {}
    for seg in segments:
        per_band[seg.band] = per_band.get(seg.band, 0) + seg.seconds
    usage = Decimal(0)
    bands_out = []
    billed_total = 0
    for band, secs in per_band.items():
        billed, cycles = tariff.billed_seconds(secs)
        price = dest.prices[band]
        amount = price * billed / tariff.unit_s
        usage += amount
        billed_total += billed
        bands_out.append(
            {
                "band": band,
                "seconds": secs,
                "billed_seconds": billed,
                "cycles": cycles,
                "unit_price": str(price),
                "amount": str(amount.normalize() if amount else Decimal(0)),
            }
        )
    standing = dest.standing_charge if dest.standing_charge is not None else tariff.standing_charge
    subtotal = standing + usage
    total = max(subtotal, tariff.minimum_charge).quantize(CENT, ROUND_HALF_UP)
    head.update(
        outcome="priced",
        destination={"prefix": dest.prefix, "name": dest.name},
        interval={
            "begin": begin.isoformat(),
            "end": end.isoformat(),
            "seconds": int((end - begin).total_seconds()),
            "from": "answer_time" if call.answer_time is not None else "start_time",
        },
        segments=[
            {
                "band": s.band,
                "start": s.start.astimezone(tariff.zone).isoformat(),
                "end": s.end.astimezone(tariff.zone).isoformat(),
                "seconds": s.seconds,
            }
            for s in segments
        ],
        increments={
            "unit_s": tariff.unit_s,
            "first_s": tariff.first_increment_s,
            "next_s": tariff.next_increment_s,
            "rounding": tariff.rounding,
            "rule": (
                "each band's seconds are rounded on their own: "
                + ("only completed increments count" if tariff.rounding == "down" else "")
                + ("a started increment counts in full" if tariff.rounding == "up" else "")
            ),
        },
        bands=bands_out,
        standing_charge=str(standing),
        usage=str(usage.normalize() if usage else Decimal(0)),
        subtotal=str(subtotal),
        minimum_charge=str(tariff.minimum_charge),
        minimum_applied=subtotal < tariff.minimum_charge,
        amount=str(total),
    )
    return former(
        "priced",
        total,
        tariff.currency,
        tariff.name,
        tariff.version,
        begin,
        end,
        int((end - begin).total_seconds()),
        head,
    )


ALPHABET = ["a", "Z", "0", "7", " ", '"', "\\", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "中",
            "\u2028", "\ud800", "\udfff", "😀", "/", "<", "&"]  # fmt: skip
ZONES = ["UTC", "America/Sao_Paulo", "Europe/London", "America/New_York", "Australia/Lord_Howe"]


def text(rng: random.Random, most: int = 6) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, most)))


def price(rng: random.Random) -> Decimal:
    return rng.choice(
        [
            Decimal("0"),
            Decimal("0.00"),
            Decimal("-0"),
            Decimal("0.09"),
            Decimal("1E+2"),
            Decimal("12345.678901"),
            Decimal(rng.randint(0, 10**6)).scaleb(-rng.randint(0, 6)),
        ]
    )


def a_tariff(rng: random.Random) -> Tariff:
    """A random tariff (not always one ``validate`` would accept: the writer must not care)."""
    names = [text(rng) + str(i) for i in range(rng.randint(1, 3))]
    if rng.random() < 0.5:  # bands that cover the week
        bands = [Band(names[0], DAYS, "00:00", "24:00")]
        names = names[:1]
        if rng.random() < 0.6:
            names = [names[0], text(rng) + "n"]
            bands = [Band(names[0], DAYS, "06:00", "22:00"), Band(names[1], DAYS, "22:00", "06:00")]
    else:
        names = [names[0], "we"]
        bands = [
            Band(names[0], DAYS[:5], "00:00", "24:00"),
            Band("we", DAYS[5:], "00:00", "24:00"),
        ]
    dests = [
        Destination(
            prefix,
            text(rng),
            {n: price(rng) for n in names},
            rng.choice([None, price(rng)]),
        )
        for prefix in sorted({rng.choice(["", "1", "11", "55", "0800"]) for _ in range(3)})
    ]
    effective = datetime(2020, 1, 1, tzinfo=rng.choice([UTC, timezone(timedelta(hours=-3))]))
    if rng.random() < 0.2:
        effective = effective.replace(microsecond=rng.randint(1, 999_999))
    first = rng.choice([1, 6, 30, 60])
    return Tariff(
        name=text(rng) or "t",
        version=rng.choice([1, 2, 10**20]),
        effective_from=effective,
        currency=rng.choice(["BRL", "USD", "é"]),
        timezone=rng.choice(ZONES),
        standing_charge=price(rng),
        minimum_charge=rng.choice([Decimal("0"), Decimal("0.50"), price(rng)]),
        unit_s=rng.choice([1, 60, 7]),
        first_increment_s=first,
        next_increment_s=rng.choice([1, 6, first]),
        rounding=rng.choice(["down", "up"]),
        bands=bands,
        destinations=dests,
        extension_ranges=rng.choice([(), ("1000-1999",)]),
        free_prefixes=rng.choice([(), ("0800",)]),
    )


def a_call(rng: random.Random, i: int) -> CallFacts:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
        seconds=rng.randint(0, 365 * 86_400),
        microseconds=rng.choice([0, rng.randint(1, 10**6 - 1)]),
    )
    answer = start + timedelta(seconds=rng.randint(0, 30)) if rng.random() < 0.7 else None
    length = rng.choice([0, 1, 59, 60, 61, 3600, 2 * 86_400, rng.randint(0, 50_000)])
    end = (answer or start) + timedelta(seconds=length, microseconds=rng.randint(0, 10**6 - 1))
    callee = rng.choice(
        [None, "", "1133334444", "1500", "08001234", "5511987654321", "+55 11 9", text(rng), "123"]
    )
    return CallFacts(
        call_id=f"c{i}",
        subscriber=rng.choice([None, "11999998888", text(rng)]),
        source="call.event",
        caller_number="11999998888",
        callee_number=callee,
        account=None,
        start_time=start,
        answer_time=answer,
        end_time=rng.choice([end, end, None]),
        duration_s=rng.choice([None, length, 0]),
        billsec_s=rng.choice([None, length, 0, 5]),
        disposition=rng.choice([None, "answered", "answered", "no_answer", "busy", text(rng)]),
    )


def both(call: CallFacts, tariff: Tariff) -> tuple[Any, Any]:
    """(the former code's fields with its explanation as json.dumps's text, the new Rated's
    fields), or the two ``Unpriced`` (reason, code)."""
    old: Any
    new: Any
    try:
        fields = former_rate_call(call, tariff)
        old = (*fields[:-1], json.dumps(fields[-1]), repr(fields[1]))  # Decimal('0') != '0.00'

    except Unpriced as exc:
        old = ("unpriced", exc.reason, exc.code)
    try:
        r = rate_call(call, tariff)
        new = (
            r.outcome,
            r.amount,
            r.currency,
            r.tariff_name,
            r.tariff_version,
            r.begin,
            r.end,
            r.billed_s,
            r.explanation_json,
            repr(r.amount),
        )
    except Unpriced as exc:
        new = ("unpriced", exc.reason, exc.code)
    return old, new


def test_the_explanation_is_json_dumps_of_the_former_dict() -> None:
    """6,000 random calls over 300 random tariffs: priced (one and several bands, the minimum
    applied or not, a destination's standing charge), free, not answered, unpriced; strings
    with escapes, non-ASCII and lone surrogates; every outcome reached often."""
    rng = random.Random(15)
    seen: dict[str, int] = {}
    several = 0
    for _ in range(300):
        tariff = a_tariff(rng)
        for i in range(20):
            old, new = both(a_call(rng, i), tariff)
            assert new == old
            seen[old[0]] = seen.get(old[0], 0) + 1
            several += old[0] == "priced" and len(json.loads(old[-2])["bands"]) > 1
    assert min(seen.get(k, 0) for k in ("priced", "free", "not_answered", "unpriced")) > 100, seen
    assert several > 100
    tariff = default_tariff("America/Sao_Paulo")
    start = datetime(2026, 3, 6, 21, 0, tzinfo=UTC)
    multi = CallFacts("m", "1", "x", "1", "1133334444", None, start, start,
                      start + timedelta(days=2, hours=5), None, None, "answered")  # fmt: skip
    old, new = both(multi, tariff)
    assert new == old
    assert len(json.loads(new[-2])["segments"]) == 6


def test_the_tariff_texts_are_made_afresh_when_its_parts_change() -> None:
    """The tariff's parts of the text are kept on the version with the objects they were made
    of: a part replaced (even by an equal value of another text) makes them afresh."""
    tariff = default_tariff("UTC")
    rng = random.Random(3)
    for i in range(40):
        old, new = both(a_call(rng, i), tariff)
        assert new == old
    for name, value in (
        ("name", "other"),
        ("version", 2),
        ("version", True),  # equal to 1, and json.dumps writes true
        ("version", 1),
        ("effective_from", datetime(1970, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))),  # equal
        ("currency", "USD"),
        ("timezone", "Etc/UTC"),
        ("unit_s", 30),
        ("first_increment_s", 1),
        ("next_increment_s", 7),
        ("rounding", "up"),
        ("standing_charge", Decimal("0.50")),
        ("minimum_charge", Decimal("0.99")),
        ("destinations", [Destination("", "any", {"standard": Decimal(1), "reduced": Decimal(2)})]),
        ("standing_charge", Decimal("0.36")),
    ):
        setattr(tariff, name, value)
        for i in range(20):
            old, new = both(a_call(rng, i), tariff)
            assert new == old, name


def test_values_the_writer_does_not_know_go_through_the_general_encoder() -> None:
    """A band named by a number, a NaN minimum (tariffs ``validate`` refuses), a bool where an
    int is (no tariff makes one): json.dumps's text of the same dict all the same."""
    rng = random.Random(5)
    base = default_tariff("UTC")
    named = Tariff(
        **{f: getattr(base, f) for f in ("name", "version", "effective_from", "currency")},
        **{f: getattr(base, f) for f in ("timezone", "standing_charge", "minimum_charge")},
        **{f: getattr(base, f) for f in ("unit_s", "first_increment_s", "next_increment_s")},
        rounding="up",
        bands=[Band(7, DAYS, "00:00", "24:00")],  # type: ignore[arg-type]
        destinations=[Destination("", "any", {7: Decimal("0.09")})],  # type: ignore[dict-item]
    )
    nan = default_tariff("UTC")
    nan.minimum_charge = Decimal("NaN")
    priced = 0
    for i in range(80):
        old, new = both(a_call(rng, i), named)
        assert new == old
        priced += old[0] == "priced"
    assert priced > 20
    refused = 0
    for i in range(80):
        c = a_call(rng, i)
        try:
            old, new = both(c, nan)
        except ArithmeticError:  # a NaN compared: the former code raised alike
            with pytest.raises(ArithmeticError):
                former_rate_call(c, nan)
            with pytest.raises(ArithmeticError):
                rate_call(c, nan)
            refused += 1
            continue
        assert new == old
    assert refused > 20
    call = a_call(random.Random(1), 1)
    begin = datetime(2026, 1, 1, tzinfo=UTC)
    segs = base.segments(begin, begin + timedelta(seconds=61))
    args: Any = (call, base, "priced", None, (begin, begin + timedelta(seconds=61)),
                 base.destinations[0], segs, [("standard", 61, True, 1, Decimal(1), Decimal(1))],
                 (Decimal(0), Decimal(1), Decimal(1), Decimal(1)))  # fmt: skip
    text = rating._explained(*args)
    assert text == json.dumps(rating.explanation(args))
    assert '"billed_seconds": true' in text


def test_explanation_reads_back_as_the_dict() -> None:
    rng = random.Random(9)
    read = 0
    for _ in range(20):
        tariff = a_tariff(rng)
        for i in range(20):
            c = a_call(rng, i)
            try:
                r = rate_call(c, tariff)
            except Unpriced:
                continue
            assert r.explanation == json.loads(json.dumps(former_rate_call(c, tariff)[-1]))
            read += 1
    assert read > 100


@pytest.mark.parametrize(
    "url", ["postgresql+asyncpg://u:p@127.0.0.1:1/none", "sqlite+aiosqlite://"]
)
def test_the_statements_bind_what_they_bound(url: str) -> None:
    """The charges' column arrays (PostgreSQL) and rows (SQLite) hold the same values as when
    the row carried the dict and the column's own JSON processor encoded it; a dict given for
    the explanation is still encoded; the calls' are untouched."""
    dialect = create_engine(url).dialect
    rng = random.Random(11)
    now = datetime(2026, 12, 3, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    former_rows: list[dict[str, Any]] = []
    calls = []
    for _ in range(20):
        tariff = a_tariff(rng)
        for i in range(20):
            c = a_call(rng, i)
            if c.subscriber is None:
                continue
            calls.append(call_row(c, now, None))
            try:
                r = rate_call(c, tariff)
            except Unpriced:
                continue
            rows.append(charge_row(c, r, now))
            former_rows.append({**rows[-1], "explanation": r.explanation})
    assert len(rows) > 100
    plain = ColumnArrays(charges)
    expected = plain.arrays(dialect, former_rows)
    store = _StoreStatement()
    assert store.charges.arrays(dialect, rows) == expected
    assert store.charges.arrays(dialect, former_rows) == expected
    assert store.calls.arrays(dialect, calls) == ColumnArrays(billing_calls).arrays(dialect, calls)
    insert = _InsertIgnore(charges)
    assert insert.columns.rows(dialect, rows) == plain.rows(dialect, former_rows)
    assert insert.columns.names == plain.names
    k = plain.names.index("explanation")
    assert all(type(v) is str and v.startswith('{"tariff": ') for v in expected[k])
    calls_insert = _InsertIgnore(billing_calls).columns
    assert calls_insert.rows(dialect, calls) == ColumnArrays(billing_calls).rows(dialect, calls)


def test_the_calls_row_is_every_fact_in_order() -> None:
    rng = random.Random(21)
    now = datetime(2026, 12, 3, tzinfo=UTC)
    for i in range(50):
        c = a_call(rng, i)
        former = {f: getattr(c, f) for f in CallFacts.__dataclass_fields__}
        former["consumed_at"] = now
        former["unpriced_reason"] = text(rng) or None
        row = call_row(c, now, former["unpriced_reason"])
        assert list(row.items()) == list(former.items())
    assert list(row) == [c.name for c in billing_calls.columns]


def test_digits_keeps_what_isdigit_keeps() -> None:
    for number in (None, "", "1133334444", "IMSI901550000000072", "+55 (11) 9", "٣٤²x1", "a"):
        former = "".join(ch for ch in number or "" if ch.isdigit())
        assert digits(number) == former


def test_the_facts_disposition_is_its_value() -> None:
    from cdr_billing.service import facts
    from cdrmodel import CDR
    from cdrmodel.record import Disposition

    for d in [*Disposition, None]:
        cdr = CDR(
            call_id="c", source="s", start_time=datetime(2026, 1, 1, tzinfo=UTC), disposition=d
        )
        got = facts(cdr).disposition
        assert got == (None if d is None else d.value)
        assert type(got) is (type(None) if d is None else str)


@pytest.mark.parametrize("kept", [4096, 2])
def test_kept_sums_price_as_the_former_code(kept: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A priced call's sums and texts are kept per tariff version by destination and seconds
    per band (``rating._priced``; ``kept`` = 2: dropped and made again): 4,000 calls on a few
    tariffs, most of them repeating a length already priced, cost what the former code says."""
    monkeypatch.setattr(rating, "PRICED_KEPT", kept)
    rng = random.Random(27)
    tariffs = [a_tariff(rng) for _ in range(4)] + [default_tariff("America/Sao_Paulo")]
    part = default_tariff("Europe/London")  # bands not covering the week: cut short
    part.bands = [
        Band("standard", DAYS[:5], "08:00", "18:00"),
        Band("reduced", DAYS, "23:00", "23:30"),
    ]
    part.__post_init__()
    tariffs.append(part)
    hits = 0
    for i in range(4000):
        tariff = rng.choice(tariffs)
        c = a_call(rng, i)
        c = CallFacts(
            *former(*(getattr(c, f) for f in CallFacts.__dataclass_fields__))[:4],
            rng.choice(["1133334444", "5511987654321", "08001234", "123"]),
            *(getattr(c, f) for f in list(CallFacts.__dataclass_fields__)[5:]),
        )
        size = len(tariff._priced or ())
        old, new = both(c, tariff)
        assert new == old
        hits += old[0] == "priced" and len(tariff._priced or ()) == size
    assert hits > 300 or kept < 100
    assert all(len(t._priced or ()) <= kept for t in tariffs)


def test_iso_is_isoformat() -> None:
    """``rating._iso`` against ``datetime.isoformat``: whole seconds and not, UTC and zones
    with DST (both folds), odd offsets, naive times, a subclass."""
    from zoneinfo import ZoneInfo

    class Sub(datetime):
        def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
            return "sub"

    rng = random.Random(31)
    zones: list[Any] = [UTC, None, timezone(timedelta(hours=-3)), timezone(timedelta(seconds=-37))]
    zones += [timezone(timedelta(hours=5, minutes=30, microseconds=7))]
    zones += [ZoneInfo(z) for z in ZONES] + [ZoneInfo("Africa/Monrovia")]
    seen = 0
    for _ in range(6000):
        d = datetime(rng.randint(1, 9999), 1, 1) + timedelta(
            days=rng.randint(0, 364), seconds=rng.randint(0, 86_399)
        )
        d = d.replace(
            tzinfo=rng.choice(zones),
            microsecond=rng.choice([0, 0, 0, rng.randint(1, 999_999)]),
            fold=rng.randint(0, 1),
        )
        if rng.random() < 0.5 and d.tzinfo is not None and 1 < d.year < 9999:
            d = d.astimezone(rng.choice(zones[2:]))
        assert rating._iso(d) == d.isoformat(), repr(d)
        seen += d.microsecond == 0
    assert seen > 3000
    s = Sub(2026, 1, 1, tzinfo=UTC)
    assert rating._iso(s) == "sub"


def test_whole_is_replace() -> None:
    """``rating._whole`` against ``replace(microsecond=0)``: the same fields, zone and fold."""
    from zoneinfo import ZoneInfo

    class Sub(datetime):
        pass

    rng = random.Random(37)
    for _ in range(3000):
        d = datetime(2026, 1, 1, tzinfo=rng.choice([UTC, ZoneInfo("Europe/London"), None]))
        d = d + timedelta(seconds=rng.randint(-(10**8), 10**8), microseconds=rng.randint(0, 10**6))
        d = d.replace(fold=rng.randint(0, 1))
        if rng.random() < 0.1:
            d = Sub.fromisoformat(d.isoformat()).replace(fold=d.fold)
        got, want = rating._whole(d), d.replace(microsecond=0)
        assert (got, type(got), got.tzinfo, got.fold) == (want, type(want), want.tzinfo, want.fold)
        assert got.timetuple() == want.timetuple()


def test_a_not_answered_reason_is_kept_for_its_values_types_only() -> None:
    """The not-answered text after the callee is kept by (disposition, billsec): a bool
    billsec (equal to 1 and 0) and a call without a subscriber are written as before."""
    tariff = default_tariff("UTC")
    start = datetime(2026, 12, 3, tzinfo=UTC)
    for billsec in (1, True, 0, False, 1, None):
        for subscriber in ("1", None, "1"):
            call = CallFacts("n", subscriber, "x", "1", "2", None, start, None, start, 1,
                             billsec, "busy")  # fmt: skip
            old, new = both(call, tariff)
            assert new == old
            assert f"billsec {billsec if billsec is not None else 0})" in new[-2]

"""The rating of one call against a tariff version: pure code, no I/O.

Rating (``rate_call``): the billed interval (answer → end, or start → end for a record that is
answered without an answer time) is cut at every band boundary in the tariff's timezone (across
midnight, weekdays, DST and any number of days); the seconds are summed per band and each band's
sum is rounded to the increments on its own, so a call spanning two bands is charged cycles only
for the seconds it spent in each (ARCHITECTURE §6). Amount = standing charge + Σ billed seconds *
unit price / unit_s, at least the minimum charge, rounded half-up to the cent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from json.encoder import encode_basestring_ascii as _js
from typing import Any, Literal

from cdr_billing.tariff import CENT, Destination, Segment, Tariff
from cdrkit.db import dumps_json
from cdrkit.frozen import builder


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What billing keeps of a consumed CDR (the ``billing_calls`` row)."""

    call_id: str
    subscriber: str | None
    source: str
    caller_number: str | None
    callee_number: str | None
    account: str | None
    start_time: datetime
    answer_time: datetime | None
    end_time: datetime | None
    duration_s: int | None
    billsec_s: int | None
    disposition: str | None


@dataclass(frozen=True, slots=True)
class Rated:
    """A priced call: the charge row's content."""

    outcome: Literal["priced", "not_answered", "free"]
    amount: Decimal
    currency: str
    tariff_name: str
    tariff_version: int
    begin: datetime
    end: datetime
    billed_s: int
    # The explanation as json.dumps's text (what the charges' JSON column stores): written
    # directly (``_explanation_text``), not encoded from a dict (issue 15, eighth round).
    explanation_json: str

    @property
    def explanation(self) -> dict[str, Any]:
        """The explanation as a value (what the column reads back)."""
        value: dict[str, Any] = json.loads(self.explanation_json)
        return value


# ``CallFacts(...)`` and ``Rated(...)`` for ~1/4 of the instructions (cdrkit.frozen).
make_facts = builder(CallFacts)
_rated = builder(Rated)


class Unpriced(Exception):
    """No charge can be made yet (no tariff, no destination, no end time): kept for rerating."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def digits(number: str | None) -> str:
    if number and number.isdigit():  # most numbers: every character kept, as below
        return number
    return "".join(filter(str.isdigit, number or ""))  # the characters that are digits


def billed_interval(call: CallFacts) -> tuple[datetime, datetime] | None:
    """The interval a call is charged for, or None when it was not answered.

    answer → end when the CDR has an answer time; start → end for a record that says it was
    answered without one (call start/end events). The end is the end time, else answer/start +
    billsec/duration. Whole seconds (fractions dropped), like FreeSWITCH's billsec."""
    if call.disposition not in (None, "answered"):
        return None
    if call.answer_time is not None:
        begin = call.answer_time
    elif call.disposition == "answered":
        begin = call.start_time
    else:
        return None
    end = call.end_time
    if end is None:
        if call.billsec_s is not None and call.answer_time is not None:
            end = call.answer_time + timedelta(seconds=call.billsec_s)
        elif call.duration_s is not None:
            end = call.start_time + timedelta(seconds=call.duration_s)
        else:
            raise Unpriced(f"call {call.call_id} has no end time and no duration", "no_end_time")
    begin, end = _whole(begin), _whole(end)
    if call.billsec_s == 0 or end <= begin:
        return None
    return begin, end


def _whole(value: datetime) -> datetime:
    """``value.replace(microsecond=0)``: a plain datetime with fold 0 less its microseconds
    (keyword arguments make ``replace`` dear; the same fields, zone and fold)."""
    us = value.microsecond
    if not us:
        return value
    if type(value) is not datetime or value.fold:
        return value.replace(microsecond=0)
    return value - timedelta(0, 0, us)


def pick_version(versions: Sequence[Tariff], at: datetime) -> Tariff | None:
    """The version in force at ``at``: the latest effective_from ≤ at (``versions`` sorted)."""
    chosen = None
    for t in versions:
        if t.effective_from <= at:
            chosen = t
        else:
            break
    return chosen


def rate_call(call: CallFacts, tariff: Tariff) -> Rated:
    """Price one call with one tariff version (see the module doc). ``Unpriced`` if it cannot.

    The explanation is json.dumps's text of ``explanation`` (the dict it was before issue 15's
    eighth round), written by ``_explanation_text``: the tariff's parts once per version, the
    rest with json's own string escaper; anything of a type the writer does not know goes
    through ``dumps_json(explanation(...))``. ``tests/billing/test_explanation.py`` holds the
    text to json.dumps of the former code's dict on random calls and tariffs."""
    interval = billed_interval(call)
    zero = ZERO_AMOUNT
    if interval is None:
        when = call.end_time or call.start_time
        disposition, billsec = call.disposition, call.billsec_s
        tail = _NOT_ANSWERED.get((disposition, billsec))
        subscriber, callee = call.subscriber, call.callee_number
        if (
            tail is None
            or type(disposition) is not str  # 1 == True == 1.0, each written its own way
            or type(billsec) is not int
            or type(subscriber) is not str
            or (callee is not None and type(callee) is not str)
        ):
            reason = (
                f"not answered ({disposition or 'no answer time'}, "
                f"billsec {billsec if billsec is not None else 0}): no charge"
            )
            text = _explained(call, tariff, "not_answered", reason, None, None, None, None, None)
            if type(disposition) is str and type(billsec) is int:
                if len(_NOT_ANSWERED) >= _NOT_ANSWERED_KEPT:
                    _NOT_ANSWERED.clear()
                _NOT_ANSWERED[disposition, billsec] = (
                    f', "outcome": "not_answered", "reason": {_js(reason)}, "amount": "0.00"}}'
                )
        else:  # _explained's text, the reason's part kept by (disposition, billsec)
            text = (
                f"{_tariff_texts(tariff)[0]}{_js(subscriber)}, "
                f'"callee": {"null" if callee is None else _js(callee)}{tail}'
            )
        return _rated(
            "not_answered", zero, tariff.currency, tariff.name, tariff.version, when, when, 0, text
        )
    begin, end = interval
    seconds = int((end - begin).total_seconds())
    number = digits(call.callee_number)
    free = tariff.on_net(number)
    if free is not None:
        text = _explained(
            call, tariff, "free", f"{free}: no charge", interval, None, None, None, None
        )
        return _rated(
            "free", zero, tariff.currency, tariff.name, tariff.version, begin, end, seconds, text
        )
    dest = tariff.lookup(number)
    if dest is None:
        raise Unpriced(
            f"no destination of tariff {tariff.name} v{tariff.version} matches the called "
            f"number {call.callee_number!r}",
            "no_destination",
        )
    segments = tariff.segments(begin, end)
    kept = tariff._priced
    if kept is None:
        kept = tariff._priced = {}
    if len(segments) == 1:
        seg = segments[0]
        secs = seconds if seg.start is begin and seg.end is end else seg.seconds
        key: tuple[Any, ...] = (dest.prefix, seg.band, secs)
    else:
        per_band: dict[str, int] = {}
        for seg in segments:
            per_band[seg.band] = per_band.get(seg.band, 0) + seg.seconds
        key = (dest.prefix, tuple(per_band.items()))
    priced = kept.get(key)
    if priced is None:
        priced = _priced(tariff, dest, key)
        if len(kept) >= PRICED_KEPT:
            kept.clear()
        kept[key] = priced
    total, bands, sums, dest_text, tail = priced
    if dest_text is None or tail is None:
        text = _explained(call, tariff, "priced", None, interval, dest, segments, bands, sums)
    else:
        try:
            text = _priced_text(call, tariff, begin, end, seconds, segments, dest_text, tail)
        except TypeError:  # a value of a type the writer does not know: the general encoder
            text = _explained(call, tariff, "priced", None, interval, dest, segments, bands, sums)
    return _rated(
        "priced", total, tariff.currency, tariff.name, tariff.version, begin, end, seconds, text
    )


# A not-answered explanation's text after its callee, by the call's (disposition, billsec) of
# those types (at most ``_NOT_ANSWERED_KEPT``, then made afresh).
_NOT_ANSWERED: dict[tuple[Any, Any], str] = {}
_NOT_ANSWERED_KEPT = 1024

# Priced calls' sums and texts kept per tariff version (``Tariff._priced``), at most this many
# (destination, seconds per band) keys; then made afresh.
PRICED_KEPT = 4096


def _priced(tariff: Tariff, dest: Destination, key: tuple[Any, ...]) -> _Priced:
    """The sums of a priced call to ``dest`` whose seconds per band ``key`` gives, the bands'
    rows, and the explanation's texts of those parts (``None`` if the writer cannot write
    them): all of it decided by the tariff version, the destination and those seconds, so
    ``rate_call`` keeps it on the version (a version is immutable: ``Tariff.__setattr__``
    forgets it when a field is set; the arithmetic is the default decimal context's, which
    billing never changes)."""
    items = ((key[1], key[2]),) if len(key) == 3 else key[1]
    usage = Decimal(0)
    bands: _Bands = []
    for band, secs in items:
        billed, cycles = tariff.billed_seconds(secs)
        price = dest.prices[band]
        amount = price * billed / tariff.unit_s
        usage += amount
        bands.append((band, secs, billed, cycles, price, amount))
    standing = dest.standing_charge if dest.standing_charge is not None else tariff.standing_charge
    subtotal = standing + usage
    total = max(subtotal, tariff.minimum_charge).quantize(CENT, ROUND_HALF_UP)
    sums = (standing, usage, subtotal, total)
    try:
        dest_text, tail = _priced_parts(tariff, dest, bands, sums)
    except TypeError:  # a value of a type the writer does not know: the general encoder
        return total, bands, sums, None, None
    return total, bands, sums, dest_text, tail


_Bands = list[tuple[Any, int, int, int, Decimal, Decimal]]
_Sums = tuple[Decimal, Decimal, Decimal, Decimal]
_Priced = tuple[Decimal, _Bands, _Sums, str | None, str | None]
# ``_explained``'s arguments as one tuple, what the two writers below take.
_Parts = tuple[
    CallFacts,
    Tariff,
    str,
    str | None,
    tuple[datetime, datetime] | None,
    Destination | None,
    list[Segment] | None,
    _Bands | None,
    _Sums | None,
]


def _explained(
    call: CallFacts,
    tariff: Tariff,
    outcome: str,
    reason: str | None,
    interval: tuple[datetime, datetime] | None,
    dest: Destination | None,
    segments: list[Segment] | None,
    bands: _Bands | None,
    sums: _Sums | None,
) -> str:
    """json.dumps's text of ``explanation`` of the same arguments."""
    parts = (call, tariff, outcome, reason, interval, dest, segments, bands, sums)
    try:
        return _explanation_text(parts)
    except TypeError:  # a value of a type the writer does not know: the general encoder
        return dumps_json(explanation(parts))


def explanation(parts: _Parts) -> dict[str, Any]:
    """A charge's explanation as a dict (the value its JSON text says) of ``_explained``'s
    arguments."""
    call, tariff, outcome, reason, interval, dest, segments, bands, sums = parts
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
    if outcome == "not_answered":
        head.update(outcome=outcome, reason=reason, amount="0.00")
        return head
    assert interval is not None
    begin, end = interval
    if outcome == "free":
        head.update(
            outcome="free",
            reason=reason,
            interval={
                "begin": begin.isoformat(),
                "end": end.isoformat(),
                "seconds": int((end - begin).total_seconds()),
            },
            amount="0.00",
        )
        return head
    assert dest is not None
    assert segments is not None
    assert bands is not None
    assert sums is not None
    standing, usage, subtotal, total = sums
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
        increments=_increments(tariff),
        bands=[
            {
                "band": band,
                "seconds": secs,
                "billed_seconds": billed,
                "cycles": cycles,
                "unit_price": str(price),
                "amount": str(amount.normalize() if amount else Decimal(0)),
            }
            for band, secs, billed, cycles, price, amount in bands
        ],
        standing_charge=str(standing),
        usage=str(usage.normalize() if usage else Decimal(0)),
        subtotal=str(subtotal),
        minimum_charge=str(tariff.minimum_charge),
        minimum_applied=subtotal < tariff.minimum_charge,
        amount=str(total),
    )
    return head


def _increments(tariff: Tariff) -> dict[str, Any]:
    return {
        "unit_s": tariff.unit_s,
        "first_s": tariff.first_increment_s,
        "next_s": tariff.next_increment_s,
        "rounding": tariff.rounding,
        "rule": (
            "each band's seconds are rounded on their own: "
            + ("only completed increments count" if tariff.rounding == "down" else "")
            + ("a started increment counts in full" if tariff.rounding == "up" else "")
        ),
    }


def _tariff_texts(tariff: Tariff) -> tuple[str, str]:
    """The explanation's text up to the subscriber's value, and its increments' text: json.dumps
    of those parts of ``explanation``, made once per tariff version (kept on the version, which
    forgets them when any field they are made of is set: ``Tariff.__setattr__``)."""
    kept: tuple[str, str] | None = tariff._texts
    if kept is not None:
        return kept
    head = dumps_json(
        {
            "name": tariff.name,
            "version": tariff.version,
            "effective_from": tariff.effective_from.isoformat(),
            "currency": tariff.currency,
            "timezone": tariff.timezone,
        }
    )
    texts = ('{"tariff": ' + head + ', "subscriber": ', dumps_json(_increments(tariff)))
    tariff._texts = texts
    return texts


def _explanation_text(parts: _Parts) -> str:
    """json.dumps's text of ``explanation(...)``, written directly: json's own C string escaper
    for every string, exact ints as their digits; ``TypeError`` for anything else (a None
    reason included: ``_js`` refuses it)."""
    call, tariff, outcome, reason, interval, dest, segments, bands, sums = parts
    if outcome == "priced":
        assert interval is not None
        assert dest is not None
        assert segments is not None
        assert bands is not None
        assert sums is not None
        begin, end = interval
        dest_text, tail = _priced_parts(tariff, dest, bands, sums)
        seconds = int((end - begin).total_seconds())
        return _priced_text(call, tariff, begin, end, seconds, segments, dest_text, tail)
    head = _tariff_texts(tariff)[0]
    subscriber, callee = call.subscriber, call.callee_number
    text = (
        f"{head}{'null' if subscriber is None else _js(subscriber)}, "
        f'"callee": {"null" if callee is None else _js(callee)}'
    )
    if outcome == "not_answered":
        why = _js(reason)  # type: ignore[arg-type]  # None: TypeError, the general encoder
        return f'{text}, "outcome": "not_answered", "reason": {why}, "amount": "0.00"}}'
    assert interval is not None
    begin, end = interval
    seconds = int((end - begin).total_seconds())
    why = _js(reason)  # type: ignore[arg-type]  # None: TypeError, the general encoder
    return (  # free
        f'{text}, "outcome": "free", "reason": {why}, "interval": {{"begin": '
        f'{_js(_iso(begin))}, "end": {_js(_iso(end))}, "seconds": {seconds}}}, '
        '"amount": "0.00"}'
    )


def _priced_parts(tariff: Tariff, dest: Destination, bands: _Bands, sums: _Sums) -> tuple[str, str]:
    """A priced explanation's text of its destination (up to its interval) and from its
    increments to its end: what the tariff version, the destination and the bands decide."""
    dest_text = f'"destination": {{"prefix": {_js(dest.prefix)}, "name": {_js(dest.name)}}}, '
    rows = []
    for band, secs, billed, cycles, price, amount in bands:
        if type(billed) is not int or type(cycles) is not int:
            raise TypeError("not an int")
        rows.append(
            f'{{"band": {_js(band)}, "seconds": {secs}, "billed_seconds": {billed}, '
            f'"cycles": {cycles}, "unit_price": {_js(str(price))}, '
            f'"amount": {_js(str(amount.normalize() if amount else Decimal(0)))}}}'
        )
    standing, usage, subtotal, total = sums
    minimum = tariff.minimum_charge
    applied = subtotal < minimum
    if type(applied) is not bool:
        raise TypeError("not a bool")
    tail = (
        f'"increments": {_tariff_texts(tariff)[1]}, "bands": [{", ".join(rows)}], '
        f'"standing_charge": {_js(str(standing))}, '
        f'"usage": {_js(str(usage.normalize() if usage else Decimal(0)))}, '
        f'"subtotal": {_js(str(subtotal))}, "minimum_charge": {_js(str(minimum))}, '
        f'"minimum_applied": {"true" if applied else "false"}, '
        f'"amount": {_js(str(total))}}}'
    )
    return dest_text, tail


def _priced_text(
    call: CallFacts,
    tariff: Tariff,
    begin: datetime,
    end: datetime,
    seconds: int,
    segments: list[Segment],
    dest_text: str,
    tail: str,
) -> str:
    """A priced explanation's text: the call's parts written here, its destination's
    (``dest_text``) and its sums' (``tail``) given (``_priced_parts``)."""
    head = _tariff_texts(tariff)[0]
    subscriber, callee = call.subscriber, call.callee_number
    zone = tariff.zone
    if len(segments) == 1 and segments[0].start is begin and segments[0].end is end:
        segs = (
            f'{{"band": {_js(segments[0].band)}, "start": {_js(_iso(begin.astimezone(zone)))}, '
            f'"end": {_js(_iso(end.astimezone(zone)))}, "seconds": {seconds}}}'
        )
    else:
        segs = ", ".join(
            [
                f'{{"band": {_js(s.band)}, "start": {_js(_iso(s.start.astimezone(zone)))}, '
                f'"end": {_js(_iso(s.end.astimezone(zone)))}, "seconds": {s.seconds}}}'
                for s in segments
            ]
        )
    return (
        f"{head}{'null' if subscriber is None else _js(subscriber)}, "
        f'"callee": {"null" if callee is None else _js(callee)}, "outcome": "priced", '
        f'{dest_text}"interval": {{"begin": {_js(_iso(begin))}, "end": {_js(_iso(end))}, '
        f'"seconds": {seconds}, "from": '
        f"{_FROM_ANSWER if call.answer_time is not None else _FROM_START}}}, "
        f'"segments": [{segs}], {tail}'
    )


# ``datetime.isoformat`` of whole seconds in pieces (``_iso``): a date's text by its ordinal
# (at most ``_DATES_KEPT``, then made afresh), the clock's by its minute and second, the
# offset's by the offset (at most ``_DATES_KEPT`` too).
_DATES: dict[int, str] = {}
_OFFSETS: dict[Any, str] = {}
_DATES_KEPT = 4096
_MINUTES = [f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
_SECONDS = [f"{s:02d}" for s in range(60)]


def _iso(value: datetime) -> str:
    """``value.isoformat()``, for less when it is a plain datetime of whole seconds (a tenth of
    the instructions in UTC): ``isoformat`` formats each field with ``sprintf``."""
    if type(value) is not datetime or value.microsecond:
        return value.isoformat()
    ordinal = value.toordinal()
    date = _DATES.get(ordinal)
    if date is None:
        if len(_DATES) >= _DATES_KEPT:
            _DATES.clear()
        date = _DATES[ordinal] = value.date().isoformat()
    if value.tzinfo is UTC:
        zone = "+00:00"
    else:
        offset = value.utcoffset()
        zone_text = _OFFSETS.get(offset)
        if zone_text is None:
            if len(_OFFSETS) >= _DATES_KEPT:
                _OFFSETS.clear()
            zone_text = _OFFSETS[offset] = value.isoformat()[19:]  # after YYYY-MM-DDTHH:MM:SS
        zone = zone_text
    return f"{date}T{_MINUTES[value.hour * 60 + value.minute]}{_SECONDS[value.second]}{zone}"


# An unpriced charge's amount (a Decimal is immutable: one will do; ``cdr.rated`` writes its text
# once, ``service._amount_text``).
ZERO_AMOUNT = Decimal("0.00")
_FROM_ANSWER, _FROM_START = '"answer_time"', '"start_time"'

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
from datetime import datetime, timedelta
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
    begin, end = begin.replace(microsecond=0), end.replace(microsecond=0)
    if call.billsec_s == 0 or end <= begin:
        return None
    return begin, end


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
        reason = (
            f"not answered ({call.disposition or 'no answer time'}, "
            f"billsec {call.billsec_s if call.billsec_s is not None else 0}): no charge"
        )
        text = _explained(call, tariff, "not_answered", reason, None, None, None, None, None)
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
    per_band: dict[str, int] = {}
    for seg in segments:
        per_band[seg.band] = per_band.get(seg.band, 0) + seg.seconds
    usage = Decimal(0)
    bands: list[tuple[Any, int, int, int, Decimal, Decimal]] = []
    for band, secs in per_band.items():
        billed, cycles = tariff.billed_seconds(secs)
        price = dest.prices[band]
        amount = price * billed / tariff.unit_s
        usage += amount
        bands.append((band, secs, billed, cycles, price, amount))
    standing = dest.standing_charge if dest.standing_charge is not None else tariff.standing_charge
    subtotal = standing + usage
    total = max(subtotal, tariff.minimum_charge).quantize(CENT, ROUND_HALF_UP)
    text = _explained(
        call,
        tariff,
        "priced",
        None,
        interval,
        dest,
        segments,
        bands,
        (standing, usage, subtotal, total),
    )
    return _rated(
        "priced", total, tariff.currency, tariff.name, tariff.version, begin, end, seconds, text
    )


_Bands = list[tuple[Any, int, int, int, Decimal, Decimal]]
_Sums = tuple[Decimal, Decimal, Decimal, Decimal]
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
    head, increments = _tariff_texts(tariff)
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
    if outcome == "free":
        why = _js(reason)  # type: ignore[arg-type]  # None: TypeError, the general encoder
        return (
            f'{text}, "outcome": "free", "reason": {why}, "interval": {{"begin": '
            f'{_js(begin.isoformat())}, "end": {_js(end.isoformat())}, "seconds": {seconds}}}, '
            '"amount": "0.00"}'
        )
    assert dest is not None
    assert segments is not None
    assert bands is not None
    assert sums is not None
    zone = tariff.zone
    segs = ", ".join(
        [
            f'{{"band": {_js(s.band)}, "start": {_js(s.start.astimezone(zone).isoformat())}, '
            f'"end": {_js(s.end.astimezone(zone).isoformat())}, "seconds": {s.seconds}}}'
            for s in segments
        ]
    )
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
    return (
        f'{text}, "outcome": "priced", "destination": {{"prefix": {_js(dest.prefix)}, '
        f'"name": {_js(dest.name)}}}, "interval": {{"begin": {_js(begin.isoformat())}, '
        f'"end": {_js(end.isoformat())}, "seconds": {seconds}, "from": '
        f"{_FROM_ANSWER if call.answer_time is not None else _FROM_START}}}, "
        f'"segments": [{segs}], "increments": {increments}, "bands": [{", ".join(rows)}], '
        f'"standing_charge": {_js(str(standing))}, '
        f'"usage": {_js(str(usage.normalize() if usage else Decimal(0)))}, '
        f'"subtotal": {_js(str(subtotal))}, "minimum_charge": {_js(str(minimum))}, '
        f'"minimum_applied": {"true" if applied else "false"}, '
        f'"amount": {_js(str(total))}}}'
    )


# An unpriced charge's amount (a Decimal is immutable: one will do; ``cdr.rated`` writes its text
# once, ``service._amount_text``).
ZERO_AMOUNT = Decimal("0.00")
_FROM_ANSWER, _FROM_START = '"answer_time"', '"start_time"'

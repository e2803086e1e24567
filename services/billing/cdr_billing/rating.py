"""The rating of one call against a tariff version: pure code, no I/O.

Rating (``rate_call``): the billed interval (answer → end, or start → end for a record that is
answered without an answer time) is cut at every band boundary in the tariff's timezone (across
midnight, weekdays, DST and any number of days); the seconds are summed per band and each band's
sum is rounded to the increments on its own, so a call spanning two bands is charged cycles only
for the seconds it spent in each (ARCHITECTURE §6). Amount = standing charge + Σ billed seconds *
unit price / unit_s, at least the minimum charge, rounded half-up to the cent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from cdr_billing.tariff import CENT, Tariff
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
    explanation: dict[str, Any]


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
    return "".join(ch for ch in number or "" if ch.isdigit())


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
        return _rated(
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
        return _rated(
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
    return _rated(
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

"""When the leg started, was answered and ended; how long it lasted and was billed; its
post-dial delay. Instants are kept in microseconds since the epoch (exact) and become datetimes
only on the CDR."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final, NamedTuple

from cdr_parser.freeswitch.source import Source
from cdr_parser.freeswitch.values import clean, positive, var
from cdrmodel.errors import UnmappableRecord

__all__ = ["Times", "as_datetime", "call_times", "pdd_ms"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US_PER_S: Final = 1_000_000


class Times(NamedTuple):
    # A named tuple: a frozen dataclass's __init__ sets each field through
    # object.__setattr__ (~45 bytecodes a CDR; issue 15, eighth round).
    start_us: int
    answer_us: int | None
    end_us: int | None
    duration_s: int | None
    billsec_s: int | None


def call_times(doc: Source, stamp_tz: tzinfo | None) -> Times:
    """The leg's instants and durations; raises ``UnmappableRecord`` when they make no sense."""
    raw = doc.variables
    start_us = _instant_us(doc, "start_uepoch", "created_time", "start", stamp_tz)
    if start_us is None:
        raise UnmappableRecord(
            "The CDR has no start time (no start_uepoch/start_epoch variable and no callflow "
            "created_time)."
        )
    answer_us = _instant_us(doc, "answer_uepoch", "answered_time", "answer", stamp_tz)
    end_us = _instant_us(doc, "end_uepoch", "hangup_time", "end", stamp_tz)
    _check_order(start_us, answer_us, end_us)

    duration = _seconds_variable(raw, "duration")
    if duration is None and end_us is not None:
        # FreeSWITCH's own formula: whole epoch seconds, end minus start.
        duration = _seconds_between(start_us, end_us)
    billsec = _seconds_variable(raw, "billsec")
    if billsec is None and end_us is not None:
        billsec = 0 if answer_us is None else _seconds_between(answer_us, end_us)
    return Times(start_us, answer_us, end_us, duration, billsec)


def pdd_ms(doc: Source) -> int | None:
    # Post-dial delay: until the caller first hears something (ringing or early media),
    # whichever came first. The raw microsecond stamps are preferred over the *msec variables:
    # some versions (the 2009 fixture) report progress_mediamsec wrong while the stamps agree.
    raw = doc.variables
    start = positive(var(raw, "start_uepoch")) or positive(doc.times().get("created_time"))
    progress = var(raw, "progress_uepoch") or doc.times().get("progress_time")
    progress_media = var(raw, "progress_media_uepoch") or doc.times().get("progress_media_time")
    if start is not None and (progress is not None or progress_media is not None):
        # The stamps are there: 0 in both means the leg never reached progress. The earliest
        # mark at or after the start (a loop, not a list and min(): issue 15, ninth round).
        first = None
        for mark in (positive(progress), positive(progress_media)):
            if mark is not None and mark >= start and (first is None or mark < first):
                first = mark
        return None if first is None else (first - start + 500) // 1000
    msecs = [
        value
        for value in (
            positive(doc.rare("progressmsec")),
            positive(doc.rare("progress_mediamsec")),
        )
        if value is not None
    ]
    return min(msecs) if msecs else None


def _instant_us(
    doc: Source, uepoch_name: str, callflow_name: str, prefix: str, tz: tzinfo | None
) -> int | None:
    # The first source present decides, and 0 there means "never happened": every source is
    # derived from the same channel timestamps, so a later one cannot know better.
    value = var(doc.variables, uepoch_name) or clean(doc.times().get(callflow_name))
    if value is not None:
        # positive(value), without its two calls (issue 15, ninth round)
        try:
            number = int(value)
        except ValueError:
            return None
        return number if number > 0 else None
    value = doc.rare(f"{prefix}_epoch")
    if value is not None:
        seconds = positive(value)
        return None if seconds is None else seconds * _US_PER_S
    if tz is None:
        # *_stamp is local time of the switch without a zone (the 2009 fixture is UTC-5):
        # reading it as UTC would be a guess.
        return None
    stamp = doc.rare(f"{prefix}_stamp")
    if stamp is None:
        return None
    try:
        local = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz)
    except ValueError:
        return None
    return (local - _EPOCH) // timedelta(microseconds=1)


def _check_order(start_us: int, answer_us: int | None, end_us: int | None) -> None:
    # Every instant comes from the same channel clock: one out of order is a corrupt document,
    # and the durations computed from it would be nonsense.
    if answer_us is not None and answer_us < start_us:
        raise UnmappableRecord(
            f"The CDR's times go backwards: answered {_iso(answer_us)}, before it started "
            f"{_iso(start_us)}."
        )
    if end_us is not None and end_us < start_us:
        raise UnmappableRecord(
            f"The CDR's times go backwards: it ended {_iso(end_us)}, before it started "
            f"{_iso(start_us)}."
        )
    if end_us is not None and answer_us is not None and end_us < answer_us:
        raise UnmappableRecord(
            f"The CDR's times go backwards: it ended {_iso(end_us)}, before it was answered "
            f"{_iso(answer_us)}."
        )


def _iso(us: int) -> str:
    return as_datetime(us).isoformat()


def _seconds_variable(raw: Mapping[str, Any], name: str) -> int | None:
    value = var(raw, name)
    if value is None:
        return None
    try:  # as_int(value), without its call: value is text here
        seconds = int(value)
    except ValueError:
        raise UnmappableRecord(
            f"The CDR's {name} variable is not a whole number ({value[:40]!r})."
        ) from None
    if seconds < 0:
        raise UnmappableRecord(f"The CDR's {name} variable is negative ({seconds}).")
    return seconds


def _seconds_between(start_us: int, end_us: int) -> int | None:
    seconds = end_us // _US_PER_S - start_us // _US_PER_S
    return seconds if seconds >= 0 else None


def as_datetime(us: int) -> datetime:
    # Positional: timedelta's keyword parsing costs ~1,500 of the ~7,000 instructions a call.
    return _EPOCH + timedelta(0, 0, us)

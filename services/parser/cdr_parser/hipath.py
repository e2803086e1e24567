"""Siemens HiPath / Hicom "compressed" call-charge lines → CDRs. Pure: no I/O.

Columns (1-based, Siemens service manual; 0-based slices in ``_COLUMNS``): 1-8 date ``DD.MM.YY``
and 9-16 time ``HH:MM:SS`` at the *end* of the call in the PBX clock; 17-19 trunk; 20-25
extension (for an unanswered call, the last one rung); 26-30 ring time ``mm:ss``; 31-38 talk time
``hh:mm:ss`` (blank when unanswered); 39-63 external number (trailing ``?`` kept: the PBX hides
digits that way); 64-74 charge units; 75-76 call type. Compressed output adds 77-87 account
(project) code, 88-98 MSN, 99-103 seizure code and 104-105 LCR route.

Call types: 1/2 voice in/out, 3/4 other services in/out, 5/6 forwarded in/out, 7/8 conference or
transit in/out, 9 outgoing via forwarding to an external number, 35-39 transfers (odd in, even
out); +50 means the call came through DISA. Type 0 is the notice printed when a call starts
ringing: not a call (the call prints again when it ends), so it makes no CDR (``RingNotice``).
Other types occur on real installations: they map with ``direction`` null, never guessed.

The carrier of a HiPath call is its trunk, written ``trunk-<n>`` (``trunk-2``), so the
``carrier`` filter and stats group by trunk.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cdrmodel import CDR, Direction, Disposition
from cdrmodel.edge import SerialLine
from cdrmodel.errors import UnmappableRecord

SOURCE = "hipath"
MIN_LENGTH = 76

_INBOUND = {1, 3, 5, 7, 35, 37, 39}
_OUTBOUND = {2, 4, 6, 8, 9, 36, 38}


class InvalidLine(UnmappableRecord):
    code = "invalid_line"


class RingNotice(Exception):
    """A type-0 line: a call started ringing. Kept as a raw line, not a call."""

    call_id: str | None = None


_CONTROL = bytes(range(32))


def _text(line: bytes) -> str:
    # Control bytes (framing the agent did not know, stray NULs) go, as calllogger does; what is
    # left must be printable ASCII, which a line read at the wrong baud rate never is.
    text = line.translate(None, _CONTROL).decode("latin-1").rstrip()
    if not text.isascii():
        raise InvalidLine(
            "the line holds non-ASCII bytes (a baud rate or parity mismatch prints such "
            f"garbage): {line[:120]!r}"
        )
    return text


def _clock(value: str, what: str, parts: int, line: bytes) -> int:
    """Seconds of ``mm:ss`` (parts=2) or ``hh:mm:ss`` (parts=3); 0 when blank."""
    if not value.strip():
        return 0
    fields = value.strip().split(":")
    if len(fields) != parts or not all(f.isdigit() and len(f) == 2 for f in fields):
        raise InvalidLine(f"the {what} {value!r} is not {'hh:mm:ss' if parts == 3 else 'mm:ss'}")
    seconds = 0
    for field in fields:
        seconds = seconds * 60 + int(field)
    return seconds


def _end_time(text: str, tz: ZoneInfo) -> datetime:
    """``DD.MM.YYhh:mm:ss`` (columns 1-16) in the PBX clock, as UTC. Parsed by hand: strptime
    was a third of the mapping's time. Two-digit years as strptime's ``%y``: 69-99 → 19xx."""
    stamp = text[:16]
    fields = (stamp[0:2], stamp[3:5], stamp[6:8], stamp[8:10], stamp[11:13], stamp[14:16])
    if (
        stamp[2:3] != "."
        or stamp[5:6] != "."
        or stamp[10:11] != ":"
        or stamp[13:14] != ":"
        or not all(f.isdigit() and f.isascii() for f in fields)
    ):
        raise InvalidLine(f"{stamp!r} is not a date and time DD.MM.YYhh:mm:ss")
    day, month, year, hour, minute, second = (int(f) for f in fields)
    try:
        local = datetime(year + (1900 if year >= 69 else 2000), month, day, hour, minute, second)
    except ValueError:
        raise InvalidLine(f"{stamp!r} is not a date and time DD.MM.YYhh:mm:ss") from None
    # A wall time repeated by a DST change is taken at its first occurrence (fold=0).
    return local.replace(tzinfo=tz).astimezone(UTC)


def _call_type(value: str) -> tuple[int, bool]:
    """(type without the DISA offset, came through DISA)."""
    if not value.strip().isdigit():
        raise InvalidLine(f"the call type {value!r} (columns 75-76) is not a number")
    number = int(value)
    if number > 50:
        return number - 50, True
    return number, False


def map_line(serial: SerialLine, *, received_at: datetime | None = None) -> CDR:
    """The CDR of one captured line; ``RingNotice`` for a type-0 line, ``InvalidLine`` (an
    ``InvalidInput``: a dead letter with its reason) for a line that is no valid record."""
    try:
        tz = ZoneInfo(serial.pbx_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidLine(f"pbx_timezone {serial.pbx_timezone!r} is not a time zone") from None
    text = _text(serial.line)
    if len(text) < MIN_LENGTH:
        raise InvalidLine(
            f"the line is {len(text)} characters long; a HiPath record has at least "
            f"{MIN_LENGTH}: {serial.line[:120]!r}"
        )
    call_type, disa = _call_type(text[74:76])
    end = _end_time(text, tz)
    if call_type == 0:
        raise RingNotice(f"ring notice at {end.isoformat()}")
    ring_s = _clock(text[25:30], "ring time (columns 26-30)", 2, serial.line)
    talk_s = _clock(text[30:38], "talk time (columns 31-38)", 3, serial.line)
    units_text = text[63:74].strip()
    if units_text and not units_text.isdigit():
        raise InvalidLine(f"the charge units {units_text!r} (columns 64-74) are not a number")
    trunk = text[16:19].strip() or None
    extension = text[19:25].strip() or None
    number = text[38:63].strip() or None
    direction = (
        Direction.INBOUND
        if call_type in _INBOUND
        else Direction.OUTBOUND
        if call_type in _OUTBOUND
        else None
    )
    answered = talk_s > 0
    extra: dict[str, Any] = {
        "call_type": call_type + (50 if disa else 0),
        "trunk": trunk,
        "extension": extension,
        "external_number": number,
        "ring_s": ring_s,
        "charge_units": int(units_text) if units_text else None,
        "disa": disa,
        "account_code": text[76:87].strip() or None,
        "msn": text[87:98].strip() or None,
        "seizure_code": text[98:103].strip() or None,
        "lcr_route": text[103:105].strip() or None,
        "edge_device": serial.device,
        "edge_seq": serial.seq,
    }
    if direction is Direction.INBOUND and not answered:
        extra["missed_call"] = True
    if direction is Direction.INBOUND:
        caller, callee = number, extension
    elif direction is Direction.OUTBOUND:
        caller, callee = extension, number
    else:
        caller = callee = None
    return CDR(
        call_id=serial.call_id,
        source=SOURCE,
        origin_host=serial.device,
        direction=direction,
        caller_number=caller,
        callee_number=callee,
        carrier=f"trunk-{trunk}" if trunk else None,
        start_time=end - timedelta(seconds=ring_s + talk_s),
        answer_time=end - timedelta(seconds=talk_s) if answered else None,
        end_time=end,
        duration_s=ring_s + talk_s,
        billsec_s=talk_s,
        disposition=Disposition.ANSWERED if answered else Disposition.NO_ANSWER,
        extra=extra,
        received_at=received_at,
    )


def map_payload(
    payload: str, *, received_at: datetime | None = None, call_id_hint: str | None = None
) -> CDR:
    """``map_line`` for a ``pbx.serial`` envelope's payload (see ``cdrmodel.edge``)."""
    try:
        serial = SerialLine.from_json(payload)
    except (ValueError, KeyError, TypeError) as exc:
        raise UnmappableRecord(f"not a pbx.serial payload: {exc}") from exc
    if call_id_hint is not None and call_id_hint != serial.call_id:
        raise UnmappableRecord(
            f"the envelope's call id {call_id_hint!r} is not the one of device "
            f"{serial.device!r} seq {serial.seq} ({serial.call_id!r})"
        )
    try:
        return map_line(serial, received_at=received_at)
    except RingNotice as notice:
        notice.call_id = serial.call_id
        raise

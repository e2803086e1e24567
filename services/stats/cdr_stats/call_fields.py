"""The few fields of a ``cdr.normalized`` message that stats uses, decoded cheaply.

Validating a whole ``cdrmodel.CDR`` with pydantic costs several times more than the rest of the
hot path, so the consumer reads the JSON with ``json.loads`` and checks only the fields it uses
(types and ranges); anything else is not looked at. ``Call`` is also what plugins receive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic_core import from_json

from cdrkit.frozen import builder

BUCKET_S = 360
DIMENSIONS = ("carrier", "account", "direction", "tenant")
_MAX_VALUE = 255


class BadCall(ValueError):
    """The message is not a CDR stats can count (the reason is the message)."""


@dataclass(slots=True, frozen=True)
class Call:
    call_id: str
    end_epoch: float
    bucket: int
    answered: bool
    billsec_s: int | None
    duration_s: int | None
    pdd_ms: int | None
    sip_code: int | None
    hangup_cause: str | None
    disposition: str | None
    carrier: str | None
    account: str | None
    direction: str | None
    tenant: str | None
    caller_number: str | None
    callee_number: str | None
    raw: dict[str, Any]  # the whole decoded message, for plugins that want more fields


# ``Call(...)`` for ~1/4 of the instructions (a frozen dataclass's __init__ is dear).
_make_call = builder(Call)


def bucket_of(end_epoch: float) -> int:
    """The bucket start: ``end_epoch - end_epoch % 360`` on whole seconds (ARCHITECTURE §6)."""
    end = int(end_epoch // 1)
    return end - end % BUCKET_S


def _int(doc: dict[str, Any], name: str, low: int = 0, high: int = 2**31) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if type(value) is not int or not low <= value <= high:
        raise BadCall(f"{name} is not an integer in [{low}, {high}]: {value!r}")
    return value


def _str(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is None or value == "":
        return None
    if type(value) is not str:
        raise BadCall(f"{name} is not a string")
    return value[:_MAX_VALUE]


def _epoch(value: Any, name: str) -> float:
    if type(value) is not str:
        raise BadCall(f"{name} is not an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadCall(f"{name} is not an ISO 8601 time: {value[:40]!r}") from exc
    if parsed.tzinfo is None:
        raise BadCall(f"{name} has no timezone")
    return parsed.timestamp()


def read_json(value: bytes | str) -> Any:
    """``json.loads(value)``: the same value, and the same error for what it refuses. Read by
    jiter (``pydantic_core.from_json``, about half json.loads's instructions on a CDR) and by
    json.loads whenever jiter refuses the text: jiter refuses some of what json.loads reads
    (lone surrogates, a BOM, UTF-16/32, deep nesting), never the other way round
    (``tests/stats/test_call_fields.py``)."""
    try:
        return from_json(value)
    except ValueError:
        return json.loads(value)


def decode_call(value: bytes | str) -> Call:
    """One ``cdr.normalized`` message → ``Call``; ``BadCall`` when it cannot be counted.

    The call's time is its ``end_time``; without one, ``start_time`` + ``duration_s``.
    """
    try:
        doc = read_json(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCall(f"not JSON: {exc}") from exc
    if type(doc) is not dict:
        raise BadCall("not a JSON object")
    call_id = doc.get("call_id")
    if type(call_id) is not str or not 0 < len(call_id) <= 128:
        raise BadCall("call_id is missing or not a string of 1 to 128 characters")
    duration = _int(doc, "duration_s")
    end = doc.get("end_time")
    if end is not None:
        end_epoch = _epoch(end, "end_time")
    else:
        end_epoch = _epoch(doc.get("start_time"), "start_time") + (duration or 0)
    billsec = _int(doc, "billsec_s")
    disposition = _str(doc, "disposition")
    if disposition is not None:
        answered = disposition == "answered"
    else:
        answered = doc.get("answer_time") is not None or bool(billsec)
    return _make_call(  # Call(...), positional in its field order
        call_id,
        end_epoch,
        bucket_of(end_epoch),
        answered,
        billsec,
        duration,
        _int(doc, "pdd_ms"),
        _int(doc, "sip_code", 100, 699),
        _str(doc, "hangup_cause"),
        disposition,
        _str(doc, "carrier"),
        _str(doc, "account"),
        _str(doc, "direction"),
        _str(doc, "tenant"),
        _str(doc, "caller_number"),
        _str(doc, "callee_number"),
        doc,
    )

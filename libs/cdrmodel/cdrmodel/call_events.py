"""Call start/end records of the telephone-bill API (ARCHITECTURE §6). Pure: no I/O.

A call is reported as two halves that share a ``call_id``::

    {"id": 1, "type": "start", "timestamp": "2016-02-29T12:00:00Z", "call_id": 70,
     "source": "99988526423", "destination": "9993468278"}
    {"id": 2, "type": "end", "timestamp": "2016-02-29T14:00:00Z", "call_id": 70}

``parse_event`` validates one decoded JSON value and returns a ``CallEvent`` or raises
``InvalidEvent`` whose ``code`` and ``detail`` name the first problem found. Ingest uses it to
answer each record of a post; the parser uses it again on what it consumes (it trusts nothing).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from cdrmodel.errors import InvalidInput

# A 2-digit area code plus an 8- or 9-digit subscriber number.
PHONE_NUMBER = re.compile(r"[0-9]{10,11}")
# Leaves room under the CDR's 128-character call id.
MAX_ID_LENGTH = 100


class EventType(StrEnum):
    START = "start"
    END = "end"


class InvalidEvent(InvalidInput):
    """One record that cannot be a call start/end event; ``code`` says which rule it broke:
    ``not_an_object``, ``missing_field``, ``bad_id``, ``bad_type``, ``bad_timestamp``,
    ``naive_timestamp``, ``bad_call_id``, ``bad_number``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class CallEvent(BaseModel):
    """One validated half of a call. ``timestamp`` is UTC; the numbers are set on a start only
    (numbers sent on an end record are ignored: the start carries them)."""

    model_config = ConfigDict(frozen=True)

    id: str
    type: EventType
    timestamp: datetime
    call_id: str
    source: str | None = None
    destination: str | None = None

    def digest(self) -> str:
        """What makes two halves the same: type, instant, call id and numbers, not the record
        id (a sender may resend a half under a new id) nor the timestamp's notation."""
        key = "|".join(
            [
                self.type.value,
                self.timestamp.astimezone(UTC).isoformat(),
                self.call_id,
                self.source or "",
                self.destination or "",
            ]
        )
        return hashlib.sha256(key.encode()).hexdigest()


def _identifier(record: dict[str, Any], name: str, code: str) -> str:
    if name not in record or record[name] is None:
        raise InvalidEvent("missing_field", f"the record has no {name!r}")
    value = record[name]
    # bool is an int in Python, but true/false is no identifier.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidEvent(code, f"{name!r} must be a string or an integer, not {_kind(value)}")
    text = str(value).strip()
    if not text:
        raise InvalidEvent(code, f"{name!r} is empty")
    if len(text) > MAX_ID_LENGTH or not text.isprintable():
        raise InvalidEvent(
            code, f"{name!r} must be printable and at most {MAX_ID_LENGTH} characters"
        )
    return text


def _timestamp(record: dict[str, Any]) -> datetime:
    if "timestamp" not in record or record["timestamp"] is None:
        raise InvalidEvent("missing_field", "the record has no 'timestamp'")
    value = record["timestamp"]
    if not isinstance(value, str):
        raise InvalidEvent(
            "bad_timestamp",
            f"'timestamp' must be an ISO 8601 string with a timezone, not {_kind(value)}",
        )
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidEvent(
            "bad_timestamp",
            f"'timestamp' {value[:40]!r} is not an ISO 8601 time like 2016-02-29T12:00:00Z",
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InvalidEvent(
            "naive_timestamp",
            f"'timestamp' {value[:40]!r} has no timezone; add Z or an offset like -03:00",
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00: in UTC, before the first representable day
        raise InvalidEvent(
            "bad_timestamp", f"'timestamp' {value[:40]!r} is out of the representable range"
        ) from None


def _number(record: dict[str, Any], name: str) -> str:
    if name not in record or record[name] is None:
        raise InvalidEvent("missing_field", f"a start record needs {name!r} (a phone number)")
    value = record[name]
    if not isinstance(value, str) or not PHONE_NUMBER.fullmatch(value):
        shown = repr(value[:40]) if isinstance(value, str) else _kind(value)
        raise InvalidEvent(
            "bad_number",
            f"{name!r} {shown} is not a phone number: a string of a 2-digit area code "
            "plus 8 or 9 digits (10 or 11 digits, digits only)",
        )
    return value


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", float: "a number"}.get(
        type(value), type(value).__name__
    )


def parse_event(record: object) -> CallEvent:
    """Validate one decoded JSON value; ``InvalidEvent`` names the first rule it breaks."""
    if not isinstance(record, dict):
        raise InvalidEvent("not_an_object", f"a record must be a JSON object, not {_kind(record)}")
    event_id = _identifier(record, "id", "bad_id")
    if record.get("type") not in ("start", "end"):
        if record.get("type") is None:
            raise InvalidEvent("missing_field", "the record has no 'type' (start or end)")
        shown = record["type"]
        shown = repr(shown[:20]) if isinstance(shown, str) else _kind(shown)
        raise InvalidEvent("bad_type", f"'type' is {shown}; it must be 'start' or 'end'")
    kind = EventType(record["type"])
    timestamp = _timestamp(record)
    call_id = _identifier(record, "call_id", "bad_call_id")
    source: str | None = None
    destination: str | None = None
    if kind is EventType.START:
        source, destination = _number(record, "source"), _number(record, "destination")
    return CallEvent(
        id=event_id,
        type=kind,
        timestamp=timestamp,
        call_id=call_id,
        source=source,
        destination=destination,
    )


def parse_event_json(text: str) -> CallEvent:
    """``parse_event`` of a JSON text (the payload of a ``call.event`` envelope)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidEvent("not_well_formed", f"the record is not JSON: {exc}") from exc
    return parse_event(value)

"""``POST /v1/events`` bodies: one call start/end record or a JSON list of them, judged one by one.

Pure: bytes in, the valid records (each with its JSON text, which becomes an envelope's payload)
and a reason per rejected record out. Whole-body problems (not JSON, not an object or a list,
too many records, wrong media type) raise the ``InvalidInput`` subclass of the 4xx answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from cdr_ingest.documents import JSON_TYPES, media_type
from cdrmodel.call_events import CallEvent, EventType, InvalidEvent, parse_event
from cdrmodel.errors import MissingField, NotWellFormed, PayloadTooLarge, UnsupportedMediaType


@dataclass(frozen=True, slots=True)
class ValidEvent:
    index: int
    event: CallEvent
    text: str  # the record as sent (re-serialised compactly): the envelope's payload


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    id: str | None
    error: str
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "id": self.id, "error": self.error, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class EventBatch:
    valid: list[ValidEvent]
    rejected: list[Rejection]
    is_list: bool  # the body was a list (even of one record), not a bare object

    @property
    def total(self) -> int:
        return len(self.valid) + len(self.rejected)


def decode_events(
    body: bytes, content_type: str | None, max_records: int, *, max_duration_s: float = 7 * 86400
) -> EventBatch:
    """The records of a post; ``InvalidInput`` (400/413/415) for a body that is none at all.

    Both halves of a call in one post are checked together: a call that would end before it
    starts, or last longer than ``max_duration_s`` (``CDRFLOW_MAX_CALL_DURATION_S``), has both
    records rejected here (a 400 when nothing else in the post is valid) instead of becoming a
    dead letter later. Halves that arrive in separate posts are checked by the parser."""
    mtype = media_type(content_type)
    if mtype not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"content type {mtype or '(none)'!r} is not supported; send application/json"
        )
    if not body or body.isspace():
        raise MissingField("the request body is empty; post a record or a list of records")
    try:
        value = json.loads(body.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise NotWellFormed(f"the body is not UTF-8 JSON: {exc}") from exc
    except RecursionError as exc:
        raise NotWellFormed("the JSON body is nested too deeply") from exc
    if isinstance(value, dict):
        records, is_list = [value], False
    elif isinstance(value, list):
        records, is_list = value, True
    else:
        raise NotWellFormed("the body must be a JSON object (one record) or a list of records")
    if len(records) > max_records:
        raise PayloadTooLarge(
            f"the list has {len(records)} records; the maximum per request is {max_records} "
            "(INGEST_EVENTS_MAX_RECORDS): split it"
        )
    valid: list[ValidEvent] = []
    rejected: list[Rejection] = []
    for index, record in enumerate(records):
        try:
            event = parse_event(record)
        except InvalidEvent as exc:
            rejected.append(Rejection(index, _raw_id(record), exc.code, exc.detail))
            continue
        text = json.dumps(record, separators=(",", ":"))  # ASCII: no lone surrogate
        valid.append(ValidEvent(index, event, text))
    impossible = _impossible_calls(valid, max_duration_s)
    if impossible:
        for item in valid:
            if item.event.call_id in impossible:
                error, detail = impossible[item.event.call_id]
                rejected.append(Rejection(item.index, item.event.id, error, detail))
        valid = [v for v in valid if v.event.call_id not in impossible]
        rejected.sort(key=lambda r: r.index)
    return EventBatch(valid, rejected, is_list)


def _impossible_calls(valid: list[ValidEvent], max_duration_s: float) -> dict[str, tuple[str, str]]:
    """Call id → (error, detail) for the calls whose two halves in this post do not make a call."""
    starts: dict[str, datetime] = {}
    ends: dict[str, datetime] = {}
    for item in valid:
        halves = starts if item.event.type is EventType.START else ends
        halves.setdefault(item.event.call_id, item.event.timestamp)
    found: dict[str, tuple[str, str]] = {}
    for call_id in starts.keys() & ends.keys():
        start, end = starts[call_id], ends[call_id]
        seconds = (end - start).total_seconds()
        if seconds < 0:
            found[call_id] = (
                "end_before_start",
                f"call {call_id!r} would end ({end.isoformat()}) before it starts "
                f"({start.isoformat()})",
            )
        elif seconds > max_duration_s:
            found[call_id] = (
                "call_too_long",
                f"call {call_id!r} would last {seconds:.0f} s ({start.isoformat()} → "
                f"{end.isoformat()}), longer than CDRFLOW_MAX_CALL_DURATION_S "
                f"({max_duration_s:.0f} s)",
            )
    return found


def _raw_id(record: object) -> str | None:
    """The record's id as sent, to name it in the answer (when it has a usable one)."""
    if isinstance(record, dict):
        value = record.get("id")
        if isinstance(value, str | int) and not isinstance(value, bool):
            text = str(value)[:100]
            try:
                text.encode()
            except UnicodeEncodeError:  # a lone surrogate ("\ud800") cannot go into the answer
                return None
            return text
    return None

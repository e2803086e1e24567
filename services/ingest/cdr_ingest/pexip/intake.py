"""Bodies of ``POST /v1/pexip/history`` and ``POST /v1/pexip/events``, judged record by record.

Pure: bytes in; out, the records to publish (kind, record id, JSON text) and a reason per rejected
one. Whole-body problems raise the ``InvalidInput`` subclass of the 4xx answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cdr_ingest.call_event_intake import Rejection
from cdr_ingest.documents import JSON_TYPES, media_type
from cdr_ingest.pexip.records import (
    BadRecord,
    RecordType,
    SinkRecord,
    compact,
    parse_page,
    parse_pexip_time,
    record_id,
    sink_record,
)
from cdrmodel.errors import MissingField, NotWellFormed, PayloadTooLarge, UnsupportedMediaType


@dataclass(frozen=True, slots=True)
class Intake:
    records: list[SinkRecord]
    rejected: list[Rejection]
    ignored: int = 0  # event-sink messages that end nothing (participant_connected, …)


def _json_body(body: bytes, content_type: str | None) -> Any:
    mtype = media_type(content_type)
    if mtype not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"content type {mtype or '(none)'!r} is not supported; send application/json"
        )
    if not body or body.isspace():
        raise MissingField("the request body is empty")
    try:
        return json.loads(body.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise NotWellFormed(f"the body is not UTF-8 JSON: {exc}") from exc
    except RecursionError as exc:
        raise NotWellFormed("the JSON body is nested too deeply") from exc


def _check_size(count: int, max_records: int) -> None:
    if count > max_records:
        raise PayloadTooLarge(
            f"the body has {count} records; the maximum per request is {max_records} "
            "(INGEST_EVENTS_MAX_RECORDS): split it"
        )


def _safe_id(obj: object) -> str | None:
    if isinstance(obj, dict):
        try:
            text = record_id(obj)
            text.encode()
        except (BadRecord, UnicodeEncodeError):
            return None
        return text
    return None


def history_record(rtype: RecordType, obj: object) -> SinkRecord:
    """One history record checked for what the parser and the CSV files rely on."""
    if not isinstance(obj, dict):
        raise BadRecord("a history record is a JSON object")
    rid = record_id(obj)
    parse_pexip_time(obj.get("start_time"), "start_time")
    parse_pexip_time(obj.get("end_time"), "end_time")
    if rtype is RecordType.PARTICIPANT and not obj.get("start_time"):
        raise BadRecord("the participant has no start_time")
    return SinkRecord(rtype.kind, rid, compact(obj))


def decode_history(body: bytes, content_type: str | None, max_records: int) -> Intake:
    """``{"conferences": [...], "participants": [...]}``, or one history list answer as the
    Management Node gives it with ``?type=`` naming the resource (see the route)."""
    value = _json_body(body, content_type)
    if not isinstance(value, dict) or not ("conferences" in value or "participants" in value):
        raise NotWellFormed(
            'the body must be {"conferences": [...], "participants": [...]} (either may be absent)'
        )
    batches: list[tuple[RecordType, list[Any]]] = []
    for rtype, key in (
        (RecordType.CONFERENCE, "conferences"),
        (RecordType.PARTICIPANT, "participants"),
    ):
        items = value.get(key, [])
        if isinstance(items, dict):  # a Management Node answer pasted as it is
            try:
                items = parse_page(items).objects
            except BadRecord as exc:
                raise NotWellFormed(f"{key}: {exc}") from exc
        if not isinstance(items, list):
            raise NotWellFormed(f"{key} must be a list of history records")
        batches.append((rtype, items))
    _check_size(sum(len(items) for _, items in batches), max_records)
    records: list[SinkRecord] = []
    rejected: list[Rejection] = []
    index = 0
    for rtype, items in batches:
        for obj in items:
            try:
                records.append(history_record(rtype, obj))
            except BadRecord as exc:
                rejected.append(
                    Rejection(index, _safe_id(obj), "invalid_record", f"{rtype.value}: {exc}")
                )
            index += 1
    return Intake(records, rejected)


def decode_events(body: bytes, content_type: str | None, max_records: int) -> Intake:
    """One event-sink message (what Pexip posts) or a list of them."""
    value = _json_body(body, content_type)
    messages = value if isinstance(value, list) else [value]
    _check_size(len(messages), max_records)
    records: list[SinkRecord] = []
    rejected: list[Rejection] = []
    ignored = 0
    for index, message in enumerate(messages):
        try:
            record = sink_record(message)
        except BadRecord as exc:
            ident = message.get("seq") if isinstance(message, dict) else None
            rejected.append(
                Rejection(
                    index, None if ident is None else str(ident)[:40], "invalid_event", str(exc)
                )
            )
            continue
        if record is None:
            ignored += 1
        else:
            records.append(record)
    return Intake(records, rejected, ignored)

"""Pexip history records and event-sink messages: shapes, ids, times, the CSV column sets. Pure.

Pexip's Management Node answers a history list as ``{"meta": {…, "next"}, "objects": [...]}``;
old versions and proxies in front of them answer a bare list (or one bare object). Times are UTC
without an offset (``2020-12-21T08:59:29.878137``); event-sink times are epoch floats.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cdrmodel import PayloadKind
from cdrmodel.pexip import pexip_time


class RecordType(StrEnum):
    CONFERENCE = "conference"
    PARTICIPANT = "participant"

    @property
    def kind(self) -> PayloadKind:
        if self is RecordType.CONFERENCE:
            return PayloadKind.PEXIP_CONFERENCE
        return PayloadKind.PEXIP_PARTICIPANT


# The CSV column sets: the union of the fields the history API returned from 2015 (v8) to now, in
# a fixed order. Fields a newer Pexip adds go, as JSON, into the trailing ``extra`` column, so the
# header of an existing aggregate file never changes (docs/pexip.md).
CONFERENCE_FIELDS: tuple[str, ...] = (
    "id",
    "name",
    "service_type",
    "tag",
    "start_time",
    "end_time",
    "duration",
    "participant_count",
    "instant_message_count",
    "participants",
    "resource_uri",
)
PARTICIPANT_FIELDS: tuple[str, ...] = (
    "id",
    "call_uuid",
    "conversation_id",
    "parent_id",
    "conference",
    "conference_name",
    "service_type",
    "service_tag",
    "call_tag",
    "call_direction",
    "protocol",
    "role",
    "display_name",
    "local_alias",
    "remote_alias",
    "remote_address",
    "remote_port",
    "start_time",
    "end_time",
    "duration",
    "has_media",
    "disconnect_reason",
    "call_quality",
    "bucketed_call_quality",
    "historic_call_quality",
    "license_type",
    "license_count",
    "bandwidth",
    "rx_bandwidth",
    "tx_bandwidth",
    "encryption",
    "is_streaming",
    "media_node",
    "signalling_node",
    "proxy_node",
    "system_location",
    "vendor",
    "av_id",
    "presentation_id",
    "media_streams",
    "resource_uri",
)
FIELDS: dict[RecordType, tuple[str, ...]] = {
    RecordType.CONFERENCE: CONFERENCE_FIELDS,
    RecordType.PARTICIPANT: PARTICIPANT_FIELDS,
}


class BadRecord(ValueError):
    """A history record or event this module cannot use (the message says why)."""


@dataclass(frozen=True, slots=True)
class Page:
    objects: list[dict[str, Any]]
    next: str | None  # meta.next: the path (and query) of the next page, None on the last
    total_count: int | None


def parse_page(value: object) -> Page:
    """A decoded history answer in either shape; ``BadRecord`` for anything else."""
    if isinstance(value, dict) and "objects" in value:
        objects = value["objects"]
        meta = value.get("meta")
        nxt = meta.get("next") if isinstance(meta, dict) else None
        total = meta.get("total_count") if isinstance(meta, dict) else None
        if not isinstance(objects, list):
            raise BadRecord("objects is not a list")
        if nxt is not None and not isinstance(nxt, str):
            raise BadRecord("meta.next is neither null nor a string")
        return Page(_objects(objects), nxt or None, total if isinstance(total, int) else None)
    if isinstance(value, list):
        return Page(_objects(value), None, len(value))
    if isinstance(value, dict):
        return Page([value], None, 1)
    raise BadRecord("the answer is neither a list response, a list nor an object")


def _objects(items: list[Any]) -> list[dict[str, Any]]:
    if not all(isinstance(o, dict) for o in items):
        raise BadRecord("a history object is not a JSON object")
    return items


def record_id(obj: dict[str, Any]) -> str:
    """The record's id: ``id``, else the last segment of ``resource_uri`` (very old answers)."""
    value = obj.get("id")
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
        text = str(value).strip()
    else:
        uri = obj.get("resource_uri")
        text = uri.rstrip("/").rsplit("/", 1)[-1] if isinstance(uri, str) else ""
    if not text:
        raise BadRecord("the record has no id")
    if len(text) > 128:
        raise BadRecord(f"the record's id is {len(text)} characters long; at most 128")
    if any(ord(c) < 32 for c in text):
        raise BadRecord("the record's id holds a control character")
    return text


def parse_pexip_time(value: object, name: str = "time") -> datetime | None:
    """A Pexip history time as aware UTC (``cdrmodel.pexip.pexip_time``); ``BadRecord`` if not."""
    return pexip_time(value, name, BadRecord)


def format_pexip_time(value: datetime) -> str:
    """A filter value the history API understands: UTC, no offset."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat()


def compact(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=False)


# Event sink ----------------------------------------------------------------------------------

# The events that end something: only these carry a finished participant or conference.
PARTICIPANT_DONE = "participant_disconnected"
CONFERENCE_DONE = "conference_ended"


@dataclass(frozen=True, slots=True)
class SinkRecord:
    """An event-sink message that becomes an envelope: its kind, record id and text."""

    kind: PayloadKind
    record_id: str
    text: str


def sink_record(message: object) -> SinkRecord | None:
    """The envelope an event-sink message becomes, or None for an event that ends nothing
    (``participant_connected``, ``conference_started``, ``eventsink_started``, …).

    A participant's id is the event's ``uuid`` (Pexip's participant id, the history record's
    ``id``); a conference's is derived from the node, name and start time, because the event
    sink never sends the history conference id."""
    if not isinstance(message, dict):
        raise BadRecord("an event-sink message is a JSON object")
    event = message.get("event")
    if not isinstance(event, str) or not event:
        raise BadRecord("the message has no event name")
    if event not in (PARTICIPANT_DONE, CONFERENCE_DONE):
        return None
    data = message.get("data")
    if not isinstance(data, dict):
        raise BadRecord(f"the {event} message has no data object")
    if event == PARTICIPANT_DONE:
        uuid = data.get("uuid") or data.get("call_id")
        if not isinstance(uuid, str) or not uuid.strip() or len(uuid) > 128:
            raise BadRecord("participant_disconnected has no usable data.uuid")
        parse_pexip_time(data.get("connect_time") or message.get("time"), "data.connect_time")
        if data.get("connect_time") is None and message.get("time") is None:
            raise BadRecord("participant_disconnected has neither data.connect_time nor time")
        return SinkRecord(PayloadKind.PEXIP_PARTICIPANT, uuid.strip(), compact(message))
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise BadRecord("conference_ended has no data.name")
    start = parse_pexip_time(data.get("start_time"), "data.start_time")
    key = f"{message.get('node', '')}|{name}|{start.timestamp() if start else ''}"
    return SinkRecord(
        PayloadKind.PEXIP_CONFERENCE,
        "sink-" + hashlib.sha256(key.encode()).hexdigest()[:32],
        compact(message),
    )

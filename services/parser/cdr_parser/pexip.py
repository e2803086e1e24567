"""Pexip Infinity participants → CDRs, conferences → conference rows. Pure: no I/O.

Two shapes arrive as ``pexip.participant``: a history participant record (pulled from the
Management Node) and an event-sink ``participant_disconnected`` message (pushed by a Conferencing
Node seconds after the call). Both map to the same call id, the participant id (the event's
``uuid`` is the history record's ``id``), so the CDR store keeps one CDR per participant whichever
arrives first. ``pexip.conference`` is a history conference record or a ``conference_ended``.

Field choices (docs/pexip.md): ``tenant`` = ``service_tag`` (Pexip's per-service tag, what
operators put a customer id in), ``carrier`` = ``system_location`` (where the call entered),
``origin_host`` = the signalling node. Pexip history times are UTC without an offset.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from cdrmodel import CDR, Direction, Disposition
from cdrmodel.errors import NotWellFormed, UnmappableRecord
from cdrmodel.pexip import pexip_time

SOURCE = "pexip"


def _text(value: object, limit: int | None = None) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    if not text:
        return None
    return text[:limit] if limit else text


def _time(value: object, name: str) -> datetime | None:
    return pexip_time(value, name, UnmappableRecord)


def _int(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = int(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number >= 0 else None


def last_segment(uri: object) -> str | None:
    """``/api/admin/history/v1/conference/<id>/`` → ``<id>``."""
    if not isinstance(uri, str) or not uri.strip("/"):
        return None
    return uri.rstrip("/").rsplit("/", 1)[-1] or None


def media_summary(streams: object) -> dict[str, Any] | None:
    """Codecs, packet loss and bitrates per stream, and the worst loss, from ``media_streams``."""
    if not isinstance(streams, list) or not streams:
        return None
    out: list[dict[str, Any]] = []
    codecs: list[str] = []
    worst = 0.0
    for stream in streams:
        if not isinstance(stream, dict):
            continue
        item = {
            k: stream.get(k)
            for k in (
                "stream_type",
                "rx_codec",
                "tx_codec",
                "rx_packet_loss",
                "tx_packet_loss",
                "rx_packets_lost",
                "tx_packets_lost",
                "rx_bitrate",
                "tx_bitrate",
                "rx_resolution",
                "tx_resolution",
            )
            if stream.get(k) not in (None, "")
        }
        out.append(item)
        for key in ("rx_codec", "tx_codec"):
            codec = _text(stream.get(key), 32)
            if codec and codec not in codecs:
                codecs.append(codec)
        for key in ("rx_packet_loss", "tx_packet_loss"):
            value = stream.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                worst = max(worst, float(value))
    return {"codecs": codecs, "max_packet_loss": worst, "streams": out}


def media_flowed(streams: object) -> bool:
    """Whether any media stream carried packets."""
    if not isinstance(streams, list):
        return False
    for stream in streams:
        if isinstance(stream, dict):
            for key in ("rx_packets_received", "tx_packets_sent"):
                value = stream.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                    return True
    return False


def _codec(media: dict[str, Any] | None) -> str | None:
    if not media or not media["codecs"]:
        return None
    return ",".join(media["codecs"])[:32]


def _numbers(direction: str | None, remote: str | None, local: str | None) -> tuple[Any, Any]:
    """(caller, callee): inbound, the remote party called the local alias; outbound reversed."""
    if direction == "out":
        return local, remote
    return remote, local


def _direction(value: object) -> Direction | None:
    return {"in": Direction.INBOUND, "out": Direction.OUTBOUND}.get(str(value))


def _extra(record: dict[str, Any], **more: Any) -> dict[str, Any]:
    extra = {
        "display_name": _text(record.get("display_name")),
        "protocol": _text(record.get("protocol")),
        "vendor": _text(record.get("vendor")),
        "role": _text(record.get("role")),
        "remote_address": _text(record.get("remote_address")),
        "call_quality": _text(record.get("call_quality")),
        "license_type": _text(record.get("license_type")),
        "license_count": _int(record.get("license_count")),
        "bandwidth": _int(record.get("bandwidth")),
        "rx_bandwidth": _int(record.get("rx_bandwidth")),
        "tx_bandwidth": _int(record.get("tx_bandwidth")),
        "service_type": _text(record.get("service_type")),
        "encryption": _text(record.get("encryption")),
        "conversation_id": _text(record.get("conversation_id")),
        "media_node": _text(record.get("media_node")),
        **more,
    }
    return {k: v for k, v in extra.items() if v is not None}


def _finish(
    call_id: str,
    record: dict[str, Any],
    start: datetime | None,
    end: datetime | None,
    duration: int | None,
    remote: str | None,
    local: str | None,
    received_at: datetime | None,
    extra: dict[str, Any],
) -> CDR:
    if start is None:
        raise UnmappableRecord("the participant has no start time")
    if duration is None and end is not None:
        duration = max(int((end - start).total_seconds()), 0)
    has_media = record.get("has_media")
    if has_media is not True and media_flowed(record.get("media_streams")):
        # The event sink sends has_media as it is at disconnect, when the media has already been
        # torn down (false in its own example, next to streams of thousands of packets).
        has_media = True
    answered = has_media is True
    direction = record.get("call_direction")
    caller, callee = _numbers(str(direction) if direction else None, remote, local)
    media = extra.get("media")
    return CDR(
        call_id=call_id,
        source=SOURCE,
        origin_host=_text(record.get("signalling_node"), 255),
        direction=_direction(direction),
        caller_number=_text(caller, 64),
        caller_name=_text(record.get("display_name"), 255),
        callee_number=_text(callee, 64),
        tenant=_text(record.get("service_tag"), 255),
        carrier=_text(record.get("system_location"), 128),
        start_time=start,
        answer_time=start if answered else None,
        end_time=end,
        duration_s=duration,
        billsec_s=duration if answered else (0 if has_media is False else None),
        disposition=Disposition.ANSWERED if answered else None,
        hangup_cause=_text(record.get("disconnect_reason"), 64),
        codec=_codec(media),
        extra=extra,
        received_at=received_at,
    )


def map_history_participant(record: dict[str, Any], received_at: datetime | None = None) -> CDR:
    call_id = _text(record.get("id"), 200) or last_segment(record.get("resource_uri"))
    if not call_id or len(call_id) > 128:
        raise UnmappableRecord("the participant has no usable id")
    start = _time(record.get("start_time"), "start_time")
    end = _time(record.get("end_time"), "end_time")
    media = media_summary(record.get("media_streams"))
    extra = _extra(
        record,
        feed="history",
        conference_id=last_segment(record.get("conference")),
        conference_name=_text(record.get("conference_name")),
        call_tag=_text(record.get("call_tag")),
        media=media,
    )
    local = _text(record.get("local_alias")) or _text(record.get("conference_name"))
    return _finish(
        call_id,
        record,
        start,
        end,
        _int(record.get("duration")),
        _text(record.get("remote_alias")),
        local,
        received_at,
        extra,
    )


def map_sink_participant(message: dict[str, Any], received_at: datetime | None = None) -> CDR:
    """An event-sink ``participant_disconnected``: ``data.connect_time`` → start, the message's
    ``time`` → end; aliases are ``source_alias`` / ``destination_alias`` (caller / callee as
    dialled, whatever the direction)."""
    data = message.get("data")
    if not isinstance(data, dict):
        raise UnmappableRecord("the event has no data object")
    call_id = _text(data.get("uuid")) or _text(data.get("call_id"))
    if not call_id or len(call_id) > 128:
        raise UnmappableRecord("the event has no usable data.uuid")
    start = _time(data.get("connect_time"), "data.connect_time") or _time(
        message.get("time"), "time"
    )
    end = _time(data.get("disconnect_time"), "data.disconnect_time") or _time(
        message.get("time"), "time"
    )
    media = media_summary(data.get("media_streams"))
    extra = _extra(
        data,
        feed="event_sink",
        conference_name=_text(data.get("conference")),
        node=_text(message.get("node")),
        media=media,
    )
    source, destination = _text(data.get("source_alias")), _text(data.get("destination_alias"))
    # source/destination are already caller/callee: undo _finish's direction swap.
    remote, local = (
        (destination, source)
        if data.get("call_direction") == "out"
        else (
            source,
            destination,
        )
    )
    return _finish(
        call_id, data, start, end, _int(data.get("duration")), remote, local, received_at, extra
    )


def parse(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise NotWellFormed(f"the Pexip record is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise NotWellFormed("the Pexip record is not a JSON object")
    return value


def map_participant(text: str, received_at: datetime | None = None) -> CDR:
    value = parse(text)
    if "event" in value and "data" in value:
        return map_sink_participant(value, received_at)
    return map_history_participant(value, received_at)


def conference_row(text: str, record_id: str | None, stored_at: datetime) -> dict[str, Any]:
    """A ``pexip_conferences`` row from a history conference or a ``conference_ended`` event."""
    value = parse(text)
    sink = "event" in value and isinstance(value.get("data"), dict)
    record: dict[str, Any] = value["data"] if sink else value
    conference_id = record_id if sink else (_text(record.get("id")) or record_id)
    if not conference_id or len(conference_id) > 128:
        raise UnmappableRecord("the conference has no usable id")
    start = _time(record.get("start_time"), "start_time")
    end = _time(record.get("end_time"), "end_time")
    participants = record.get("participants")
    ids = [p for p in map(last_segment, participants if isinstance(participants, list) else [])]
    return {
        "conference_id": conference_id,
        "name": _text(record.get("name"), 255),
        "service_type": _text(record.get("service_type"), 32),
        "tag": _text(record.get("tag"), 255),
        "start_time": start,
        "end_time": end,
        "duration_s": _int(record.get("duration"))
        if not sink
        else (int((end - start).total_seconds()) if start and end else None),
        "participant_count": _int(record.get("participant_count")),
        # Ids the store can hold as a link's key (no NUL: PostgreSQL text refuses it).
        "participant_ids": [i for i in ids if i and len(i) <= 128 and "\x00" not in i],
        "feed": "event_sink" if sink else "history",
        "stored_at": stored_at,
    }

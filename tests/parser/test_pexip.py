"""Pexip participant → CDR mapping, expected values read off the fixtures (tests/fixtures/pexip)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cdr_parser import pexip
from cdrmodel import Direction, Disposition
from cdrmodel.errors import InvalidInput

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pexip"


def history_participant() -> dict[str, Any]:
    text = (FIXTURES / "pexip_history_participant_list_2020.json").read_text()
    record: dict[str, Any] = json.loads(text)["objects"][0]
    return record


def sink_events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(
        (FIXTURES / "pexip_eventsink_events_2019.json").read_text()
    )
    return events


def test_history_participant_2020() -> None:
    cdr = pexip.map_participant(json.dumps(history_participant()))
    assert cdr.call_id == "a94332fc-7a07-4935-9f78-6f87bc4df0d0"
    assert cdr.source == "pexip"
    assert cdr.direction is Direction.INBOUND
    assert cdr.caller_number == "Test"  # remote_alias of an inbound call
    assert cdr.callee_number == "meetup"  # local_alias
    assert cdr.caller_name == "Anders"
    assert cdr.start_time == datetime(2020, 12, 21, 8, 39, 50, 905201, tzinfo=UTC)
    assert cdr.end_time == datetime(2020, 12, 21, 8, 59, 29, 878137, tzinfo=UTC)
    assert cdr.answer_time == cdr.start_time
    assert cdr.duration_s == 1178
    assert cdr.billsec_s == 1178  # has_media
    assert cdr.disposition is Disposition.ANSWERED
    assert cdr.hangup_cause == "Call disconnected"
    assert cdr.codec == "opus,VP9"
    assert cdr.tenant is None  # service_tag ""
    assert cdr.carrier == "Prod"  # system_location
    assert cdr.origin_host == "10.1.2.4"  # signalling_node
    extra = cdr.extra
    assert extra["conference_id"] == "c4cc1c92-6b05-4ed9-9be6-92074cfecf7f"
    assert extra["conference_name"] == "Meetup"
    assert extra["protocol"] == "WebRTC"
    assert extra["role"] == "chair"
    assert extra["remote_address"] == "185.32.10.83"
    assert extra["call_quality"] == "1_good"
    assert (extra["license_type"], extra["license_count"]) == ("port", 1)
    assert (extra["bandwidth"], extra["rx_bandwidth"], extra["tx_bandwidth"]) == (448, 1722, 448)
    assert extra["vendor"].startswith("Mozilla/5.0 (Windows NT 10.0")
    assert extra["feed"] == "history"
    media = extra["media"]
    assert media["codecs"] == ["opus", "VP9"]
    assert media["max_packet_loss"] == 0.02  # the video stream's tx_packet_loss
    assert [s["stream_type"] for s in media["streams"]] == ["audio", "video"]
    assert media["streams"][1]["tx_packets_lost"] == 12


def test_outbound_swaps_caller_and_callee() -> None:
    record = {**history_participant(), "call_direction": "out", "has_media": False}
    record["media_streams"] = []
    cdr = pexip.map_participant(json.dumps(record))
    assert cdr.direction is Direction.OUTBOUND
    assert (cdr.caller_number, cdr.callee_number) == ("meetup", "Test")
    assert cdr.billsec_s == 0
    assert cdr.answer_time is None
    assert cdr.disposition is None


def test_old_era_participant_without_late_fields() -> None:
    record = history_participant()
    for name in (
        "bucketed_call_quality",
        "historic_call_quality",
        "rx_bandwidth",
        "tx_bandwidth",
        "call_tag",
        "av_id",
        "presentation_id",
        "media_streams",
    ):
        record.pop(name)
    record["local_alias"] = ""
    cdr = pexip.map_participant(json.dumps(record))
    assert cdr.callee_number == "Meetup"  # no local alias: the conference name
    assert cdr.codec is None
    assert "rx_bandwidth" not in cdr.extra
    assert cdr.duration_s == 1178


def test_event_sink_participant_disconnected_2019() -> None:
    message = sink_events()[1]
    cdr = pexip.map_participant(json.dumps(message))
    assert cdr.call_id == "ac58a572-33e5-4b19-ac1c-f0b1d22215e6"  # data.uuid
    assert cdr.start_time == datetime.fromtimestamp(1559897886.593371, UTC)  # connect_time
    assert cdr.end_time == datetime.fromtimestamp(1559898886.526124, UTC)  # the event's time
    assert cdr.duration_s == 999  # 1559898886.526124 - 1559897886.593371, whole seconds
    assert cdr.caller_number == "Alice"  # source_alias
    assert cdr.callee_number == "meet.webapp"  # destination_alias
    assert cdr.direction is Direction.INBOUND
    assert cdr.carrier == "Oslo"
    assert cdr.codec == "opus,VP8"
    # has_media is false in this push, but its streams carried thousands of packets: answered.
    assert cdr.billsec_s == 999
    assert cdr.disposition is Disposition.ANSWERED
    no_media = copy.deepcopy(message)
    del no_media["data"]["media_streams"]
    unanswered = pexip.map_participant(json.dumps(no_media))
    assert unanswered.billsec_s == 0
    assert unanswered.disposition is None
    assert cdr.extra["conference_name"] == "meet.webapp"
    assert cdr.extra["feed"] == "event_sink"
    assert cdr.extra["node"] == "10.47.2.21"


def test_conference_rows() -> None:
    text = (FIXTURES / "pexip_history_conference_list_2020.json").read_text()
    conf = json.loads(text)["objects"][0]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    row = pexip.conference_row(json.dumps(conf), conf["id"], now)
    assert row["conference_id"] == "c4cc1c92-6b05-4ed9-9be6-92074cfecf7f"
    assert row["name"] == "Meetup"
    assert row["duration_s"] == 3278
    assert row["participant_count"] == 2
    assert row["participant_ids"] == [
        "a94332fc-7a07-4935-9f78-6f87bc4df0d0",
        "f898bff0-06c7-4440-894b-374948e0aaf4",
    ]
    assert row["end_time"] == datetime(2020, 12, 21, 8, 59, 31, 112339, tzinfo=UTC)
    ended = sink_events()[2]
    sink = pexip.conference_row(json.dumps(ended), "sink-x", now)
    assert sink["conference_id"] == "sink-x"
    assert sink["feed"] == "event_sink"
    assert sink["duration_s"] == 1000
    assert sink["name"] == "meet.webapp"


@pytest.mark.parametrize(
    "change",
    [
        {"start_time": None},
        {"start_time": "yesterday"},
        {"id": None, "resource_uri": None},
        {"id": "x" * 200},
        {"start_time": 1e300},
    ],
)
def test_unmappable_participants_raise_invalid_input(change: dict[str, Any]) -> None:
    record = copy.deepcopy(history_participant())
    record.update(change)
    with pytest.raises(InvalidInput):
        pexip.map_participant(json.dumps(record))


def test_not_json_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        pexip.map_participant("{nope")
    with pytest.raises(InvalidInput):
        pexip.map_participant("[1, 2]")

"""POST /v1/events: per-record validation with reasons, 202/400 shapes, what is published."""

from __future__ import annotations

import json
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from cdr_ingest.spool.codec import read_segment
from cdr_ingest.spool.segment_log import SEGMENT_SUFFIX
from cdrflow.platform import create_service_app
from cdrmodel import PayloadKind, RawEnvelope, topics
from cdrmodel.call_events import InvalidEvent, parse_event
from tests.e2e.conftest import serving
from tests.ingest.conftest import IngestFactory
from tests.metrics import sample

START = {
    "id": 1,
    "type": "start",
    "timestamp": "2016-02-29T12:00:00Z",
    "call_id": 70,
    "source": "99988526423",
    "destination": "9993468278",
}
END = {"id": 2, "type": "end", "timestamp": "2016-02-29T14:00:00Z", "call_id": 70}


async def _published(app: FastAPI, count: int) -> list[tuple[bytes | None, RawEnvelope]]:
    """(key, envelope) of what ingest put on cdr.raw, read by a fresh group."""
    bus = app.state.cdrflow.runtime.bus
    consumer = await bus.consumer([topics.RAW], f"check-{uuidlib.uuid4().hex}")
    try:
        found: list[tuple[bytes | None, RawEnvelope]] = []
        for _ in range(30):
            for msg in await consumer.getmany(timeout_s=0.05, max_records=1000):
                found.append((msg.key, RawEnvelope.from_json(msg.value)))
            if len(found) >= count:
                break
        return found
    finally:
        await consumer.close()


def _error(record: Any) -> str:
    with pytest.raises(InvalidEvent) as info:
        parse_event(record)
    return info.value.code


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("1133334444", True),  # area code + 8 digits
        ("11933334444", True),  # area code + 9 digits
        ("113333444", False),  # 9 digits
        ("119333344445", False),  # 12 digits
        ("11 3333-4444", False),
        ("+5511933334444", False),
        ("\uff11\uff11\uff13\uff13\uff13\uff13\uff14\uff14\uff14\uff14", False),  # fullwidth
        (1133334444, False),  # a JSON number, not a string
        ("", False),
    ],
)
def test_phone_numbers_are_an_area_code_plus_8_or_9_digits(number: object, ok: bool) -> None:
    for name in ("source", "destination"):
        record = {**START, name: number}
        if ok:
            assert getattr(parse_event(record), name) == number
        else:
            assert _error(record) == "bad_number"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"timestamp": "2016-02-29T12:00:00"}, "naive_timestamp"),
        ({"timestamp": "2016-02-29"}, "naive_timestamp"),
        ({"timestamp": "29/02/2016 12:00"}, "bad_timestamp"),
        ({"timestamp": 1456747200}, "bad_timestamp"),
        ({"timestamp": None}, "missing_field"),
        ({"type": "middle"}, "bad_type"),
        ({"type": None}, "missing_field"),
        ({"call_id": None}, "missing_field"),
        ({"call_id": ""}, "bad_call_id"),
        ({"call_id": True}, "bad_call_id"),
        ({"call_id": {"x": 1}}, "bad_call_id"),
        ({"id": None}, "missing_field"),
        ({"id": 1.5}, "bad_id"),
        ({"source": None}, "missing_field"),
    ],
)
def test_each_rule_has_its_reason(change: dict[str, Any], code: str) -> None:
    record = {k: v for k, v in {**START, **change}.items() if v is not None}
    assert _error(record) == code


def test_ids_are_normalised_to_strings_and_times_to_utc() -> None:
    event = parse_event({**START, "timestamp": "2016-02-29T09:00:00-03:00"})
    assert (event.id, event.call_id) == ("1", "70")
    assert event.timestamp.isoformat() == "2016-02-29T12:00:00+00:00"
    # An end needs no numbers; numbers sent on one are not its business.
    end = parse_event({**END, "source": "not a number"})
    assert (end.source, end.destination) == (None, None)
    assert _error([START]) == "not_an_object"


async def test_a_mixed_list_accepts_the_good_and_names_each_bad(ingest: IngestFactory) -> None:
    records = [
        START,  # 0 ok
        {**START, "id": 3, "call_id": 71, "source": "119333344445"},  # 1 12 digits
        END,  # 2 ok
        {**END, "id": 4, "timestamp": "2016-02-29T14:00:00"},  # 3 naive
        {"id": 5, "type": "end", "timestamp": "2016-02-29T14:00:00Z"},  # 4 no call_id
        "not a record",  # 5
        {**START, "id": 6, "call_id": "abc-72", "source": "11933334444"},  # 6 ok, 11 digits
    ]
    async with ingest() as (app, client):
        accepted = sample("cdrflow_ingest_events_total", outcome="accepted")
        rejected = sample("cdrflow_ingest_events_total", outcome="rejected")
        resp = await client.post("/v1/events", json=records)
        assert resp.status_code == 202, resp.text
        body = resp.json()
        assert body["accepted"] == 3
        assert [(r["index"], r["id"], r["error"]) for r in body["rejected"]] == [
            (1, "3", "bad_number"),
            (3, "4", "naive_timestamp"),
            (4, "5", "missing_field"),
            (5, None, "not_an_object"),
        ]
        assert all(r["detail"] for r in body["rejected"])
        assert "'source'" in body["rejected"][0]["detail"]

        published = await _published(app, 3)
        assert len(published) == 3
        assert [key for key, _ in published] == [b"70", b"70", b"abc-72"]
        for _, env in published:
            assert env.kind is PayloadKind.CALL_EVENT
            assert env.content_type == "application/json"
        assert [json.loads(env.payload or "") for _, env in published] == [
            records[0],
            records[2],
            records[6],
        ]
        assert sample("cdrflow_ingest_events_total", outcome="accepted") == accepted + 3
        assert sample("cdrflow_ingest_events_total", outcome="rejected") == rejected + 4


async def test_one_record_is_202_and_nothing_valid_is_400_with_the_same_shape(
    ingest: IngestFactory,
) -> None:
    async with ingest() as (app, client):
        one = await client.post("/v1/events", json=END)
        assert (one.status_code, one.json()) == (202, {"accepted": 1, "rejected": []})

        bad_one = await client.post("/v1/events", json={**START, "timestamp": "2016-02-29 12:00"})
        assert bad_one.status_code == 400
        body = bad_one.json()
        assert body["error"] == "naive_timestamp"
        assert "timezone" in body["detail"]
        assert body["accepted"] == 0
        assert [r["index"] for r in body["rejected"]] == [0]

        bad_list = await client.post("/v1/events", json=[{**END, "type": "x"}, 7])
        assert bad_list.status_code == 400
        body = bad_list.json()
        assert (body["error"], body["accepted"]) == ("no_valid_records", 0)
        assert [r["error"] for r in body["rejected"]] == ["bad_type", "not_an_object"]

        empty = await client.post("/v1/events", json=[])
        assert (empty.status_code, empty.json()["error"]) == (400, "no_valid_records")
        # Only the one valid record reached the bus.
        assert len(await _published(app, 2)) == 1


async def test_whole_body_errors(ingest: IngestFactory) -> None:
    async with ingest(events_max_records=3, max_body_bytes=4096) as (_, client):
        cases = [
            (json.dumps([END] * 4).encode(), "application/json", 413, "payload_too_large"),
            (b"x" * 5000, "application/json", 413, "payload_too_large"),
            (json.dumps(END).encode(), "text/xml", 415, "unsupported_media_type"),
            (b"{not json", "application/json", 400, "not_well_formed"),
            (b"42", "application/json", 400, "not_well_formed"),
            (b"", "application/json", 400, "missing_field"),
        ]
        for body, ctype, status, code in cases:
            resp = await client.post("/v1/events", content=body, headers={"content-type": ctype})
            assert (resp.status_code, resp.json()["error"]) == (status, code), body[:40]
            assert resp.json()["detail"]


async def test_events_need_the_same_credentials_as_cdrs(ingest: IngestFactory) -> None:
    async with ingest(tokens="s3cret") as (_, client):
        assert (await client.post("/v1/events", json=END)).status_code == 401
        resp = await client.post("/v1/events", json=END, headers={"authorization": "Bearer s3cret"})
        assert resp.status_code == 202


async def test_events_are_spooled_while_the_bus_is_away(tmp_path: Path) -> None:
    # Nothing listens on the port: the batch send times out and the records go to the spool,
    # then the next post goes straight behind them.
    app = create_service_app(
        "ingest",
        bus_url="kafka://127.0.0.1:9?request_timeout_ms=1000",
        data_dir=tmp_path,
        spool_after_s=0.3,
    )
    async with serving(app) as client:
        resp = await client.post("/v1/events", json=[START, END, {**END, "call_id": 71}, 5])
        assert (resp.status_code, resp.json()["accepted"]) == (202, 3)
        resp = await client.post("/v1/events", json={**START, "call_id": "72"})
        assert resp.status_code == 202
        assert (await client.get("/v1/spool")).json()["depth"] == 4
    records = []
    for segment in sorted((tmp_path / "spool").glob(f"*{SEGMENT_SUFFIX}")):
        records += read_segment(segment.read_bytes())[0]
    envelopes = [RawEnvelope.from_json(r.value) for r in records]
    assert sorted(r.key or b"" for r in records) == [b"70", b"70", b"71", b"72"]
    assert {e.kind for e in envelopes} == {PayloadKind.CALL_EVENT}
    assert sorted(e.call_id or "" for e in envelopes) == ["70", "70", "71", "72"]


async def test_a_call_longer_than_the_maximum_in_one_post_is_400(ingest: IngestFactory) -> None:
    """1950 → 2026 (duration overflows PostgreSQL's INTEGER; it used to stop the parser) and a
    call ending before it starts are refused at the door when both halves come in one post."""
    old = {**START, "id": 10, "call_id": 80, "timestamp": "1950-01-01T00:00:00Z"}
    new = {**END, "id": 11, "call_id": 80, "timestamp": "2026-01-01T00:00:00Z"}
    async with ingest() as (app, client):
        resp = await client.post("/v1/events", json=[old, new])
        assert resp.status_code == 400, resp.text
        body = resp.json()
        assert [(r["index"], r["error"]) for r in body["rejected"]] == [
            (0, "call_too_long"),
            (1, "call_too_long"),
        ]
        assert "CDRFLOW_MAX_CALL_DURATION_S" in body["rejected"][0]["detail"]
        # With a good call beside it: 202 for the good one, the long one named.
        week = {**new, "timestamp": "1950-01-08T00:00:01Z"}
        backwards = {**START, "id": 12, "call_id": 81, "timestamp": "2016-02-29T15:00:00Z"}
        mixed = await client.post(
            "/v1/events", json=[old, week, START, END, backwards, END | {"id": 13, "call_id": 81}]
        )
        assert mixed.status_code == 202
        assert mixed.json()["accepted"] == 2
        assert [(r["index"], r["error"]) for r in mixed.json()["rejected"]] == [
            (0, "call_too_long"),
            (1, "call_too_long"),
            (4, "end_before_start"),
            (5, "end_before_start"),
        ]
        exactly_a_week = {**new, "timestamp": "1950-01-08T00:00:00Z"}
        assert (await client.post("/v1/events", json=[old, exactly_a_week])).status_code == 202
        assert len(await _published(app, 5)) == 4


async def test_the_maximum_call_duration_is_configurable(ingest: IngestFactory) -> None:
    async with ingest(max_call_duration_s=3600) as (_app, client):
        resp = await client.post("/v1/events", json=[START, END])  # two hours
        assert resp.status_code == 400
        assert resp.json()["rejected"][0]["error"] == "call_too_long"

"""POST /v1/pexip/history and /v1/pexip/events: durable envelopes, per-record reasons, 4xx."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cdrmodel import PayloadKind
from tests.ingest.conftest import IngestFactory, published


def _fixture(fixtures_dir: Path, name: str) -> Any:
    return json.loads((fixtures_dir / "pexip" / name).read_text())


async def test_history_records_become_envelopes_keyed_by_record_id(
    ingest: IngestFactory, fixtures_dir: Path
) -> None:
    part = _fixture(fixtures_dir, "pexip_history_participant_list_2020.json")["objects"][0]
    conf_page = _fixture(fixtures_dir, "pexip_history_conference_list_2020.json")
    body = {"conferences": conf_page, "participants": [part, {"display_name": "no id"}]}
    async with ingest() as (app, client):
        resp = await client.post("/v1/pexip/history", json=body)
        assert resp.status_code == 202, resp.text
        answer = resp.json()
        assert answer["accepted"] == 2
        assert [(r["index"], r["error"]) for r in answer["rejected"]] == [(2, "invalid_record")]
        envs = sorted(await published(app, 2), key=lambda e: e.kind.value)
    assert [e.kind for e in envs] == [PayloadKind.PEXIP_CONFERENCE, PayloadKind.PEXIP_PARTICIPANT]
    assert envs[0].call_id == "c4cc1c92-6b05-4ed9-9be6-92074cfecf7f"
    assert envs[1].call_id == "a94332fc-7a07-4935-9f78-6f87bc4df0d0"
    assert json.loads(envs[1].payload or "") == part  # the record as Pexip sent it


async def test_event_sink_messages(ingest: IngestFactory, fixtures_dir: Path) -> None:
    connected, disconnected, ended = _fixture(fixtures_dir, "pexip_eventsink_events_2019.json")
    async with ingest() as (app, client):
        resp = await client.post("/v1/pexip/events", json=connected)
        assert resp.status_code == 202
        assert resp.json() == {"accepted": 0, "rejected": [], "ignored": 1}
        resp = await client.post("/v1/pexip/events", json=[disconnected, ended])
        assert resp.status_code == 202
        assert resp.json()["accepted"] == 2
        envs = sorted(await published(app, 2), key=lambda e: e.kind.value)
    assert envs[1].kind is PayloadKind.PEXIP_PARTICIPANT
    assert envs[1].call_id == "ac58a572-33e5-4b19-ac1c-f0b1d22215e6"
    assert envs[0].kind is PayloadKind.PEXIP_CONFERENCE
    assert envs[0].call_id is not None
    assert envs[0].call_id.startswith("sink-")


async def test_hostile_bodies_get_4xx(ingest: IngestFactory, fixtures_dir: Path) -> None:
    _, disconnected, _ = _fixture(fixtures_dir, "pexip_eventsink_events_2019.json")
    no_uuid = {**disconnected, "data": {**disconnected["data"], "uuid": None, "call_id": None}}
    async with ingest() as (_app, client):
        cases = [
            ("/v1/pexip/events", b"{not json", "application/json", 400),
            ("/v1/pexip/events", b"{}", "text/plain", 415),
            ("/v1/pexip/events", b"", "application/json", 400),
            ("/v1/pexip/events", json.dumps(no_uuid).encode(), "application/json", 400),
            ("/v1/pexip/events", b"[1, 2]", "application/json", 400),
            ("/v1/pexip/history", b"[]", "application/json", 400),
            ("/v1/pexip/history", b'{"participants": 5}', "application/json", 400),
            ("/v1/pexip/history", b'{"participants": [{"id": "x"}]}', "application/json", 400),
        ]
        for path, body, ctype, status in cases:
            resp = await client.post(path, content=body, headers={"Content-Type": ctype})
            assert resp.status_code == status, (path, body, resp.text)
            assert resp.json()["error"]


async def test_pexip_routes_need_the_ingest_credentials(ingest: IngestFactory) -> None:
    async with ingest(tokens="pex-token") as (_app, client):
        resp = await client.post("/v1/pexip/events", json={"event": "eventsink_started"})
        assert resp.status_code == 401
        resp = await client.post(
            "/v1/pexip/events",
            json={"event": "eventsink_started", "data": {}},
            headers={"Authorization": "Bearer pex-token"},
        )
        assert resp.status_code == 202

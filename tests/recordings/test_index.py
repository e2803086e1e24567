"""The index consumer on the memory bus, fed what the parser really produces."""

from __future__ import annotations

import json
import uuid as uuidlib
from pathlib import Path

from cdr_parser.freeswitch import map_json
from cdrkit.bus import Message
from cdrmodel import DeadLetter, topics
from tests.e2e.conftest import wait_for
from tests.metrics import sample
from tests.recordings.conftest import SWITCH_ROOT, Rec, RecFactory, audio_bytes, cdr, young


async def test_fusionpbx_style_cdr_from_the_parser_is_indexed_and_served(
    rec: Rec, fixtures_dir: Path
) -> None:
    doc = json.loads(
        (fixtures_dir / "freeswitch/freeswitch_json_cdr_cgrates_answered.json").read_text()
    )
    call_id = str(uuidlib.uuid4())
    doc["variables"] |= {
        "uuid": call_id,
        "domain_name": "acme.example.com",
        "record_path": f"{SWITCH_ROOT}/acme.example.com/archive/2026/Nov/25",
        "record_name": f"{call_id}.mp3",
    }
    mapped = map_json(doc)
    assert (
        mapped.recording_path == f"{SWITCH_ROOT}/acme.example.com/archive/2026/Nov/25/{call_id}.mp3"
    )
    data = audio_bytes(50_000)
    rec.write(f"acme.example.com/archive/2026/Nov/25/{call_id}.mp3", data)
    await rec.index(mapped)
    row = await rec.row(mapped.call_id)
    assert row.relative_path == f"acme.example.com/archive/2026/Nov/25/{call_id}.mp3"
    assert (row.format, row.size_bytes, row.state) == ("mp3", 50_000, "pending")
    assert row.start_time == mapped.start_time
    assert row.tenant == mapped.tenant
    meta = (await rec.client.get(f"/v1/recordings/{mapped.call_id}")).json()
    assert meta["location"] == "local"  # the fixture's call is old, but it has not been archived
    r = await rec.client.get(f"/v1/recordings/{mapped.call_id}/audio")
    assert (r.status_code, r.headers["content-type"], r.content) == (200, "audio/mpeg", data)


async def test_calls_without_recordings_are_skipped_and_redelivery_is_idempotent(
    recordings: RecFactory,
) -> None:
    async with recordings() as rec:
        skipped = sample("cdrflow_recordings_indexed_total", outcome="no_recording")
        plain = [cdr() for _ in range(20)]
        recorded = cdr(recording_path=f"{SWITCH_ROOT}/acme/r.wav", start=young(2))
        later = cdr(recording_path=f"{SWITCH_ROOT}/acme/s.wav")
        await rec.publish(*plain, recorded)
        await rec.index(recorded)
        # the same call again, with another path: the first version wins
        again = recorded.model_copy(update={"recording_path": f"{SWITCH_ROOT}/acme/other.wav"})
        await rec.publish(again, recorded)
        await rec.index(later)  # consumed after the redeliveries
        for c in plain:
            assert await rec.row(c.call_id) is None
        assert (await rec.row(recorded.call_id)).relative_path == "acme/r.wav"
        assert sample("cdrflow_recordings_indexed_total", outcome="no_recording") == skipped + 20


async def test_a_message_that_is_no_cdr_is_dead_lettered(rec: Rec) -> None:
    await rec.publish(b'{"call_id": "x", "recording_path": "/a.wav"}')
    bus = rec.app.state.cdrflow.runtime.bus
    consumer = await bus.consumer([topics.DLQ], f"check-{uuidlib.uuid4().hex}")
    found: list[Message] = []
    try:

        async def dead_lettered() -> bool:
            found.extend(await consumer.getmany(timeout_s=0.1, max_records=10))
            return bool(found)

        await wait_for(dead_lettered, timeout=10, what="a dead letter")
    finally:
        await consumer.close()
    letter = DeadLetter.model_validate_json(found[0].value)
    assert (letter.stage, letter.error, letter.topic) == (
        "recordings",
        "invalid_cdr",
        topics.NORMALIZED,
    )
    assert rec.component.ready() is None  # the loop carries on

"""``replay --from-store`` of a call paired from start/end records re-publishes its CDR.

A paired call's raw payload is its two records as a JSON list; replayed as one ``call.event``
envelope, the parser (one record per envelope) dead-lettered every such call as
``not_an_object`` — and a replay window of them was a flood that stopped the consumer.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

from cdrflow.platform import create_service_app
from cdrflow.replay import replay_store
from cdrkit.bus import Record
from cdrmodel import CDR, PayloadKind, RawEnvelope, topics
from tests.e2e.conftest import serving, wait_for

START = {
    "id": "s70",
    "type": "start",
    "timestamp": "2016-02-29T21:57:13Z",
    "call_id": 70,
    "source": "99988526423",
    "destination": "9993468278",
}
END = {"id": "e70", "type": "end", "timestamp": "2016-02-29T22:17:53Z", "call_id": 70}


def _half(record: dict[str, object]) -> Record:
    env = RawEnvelope(
        id=uuid.uuid4().hex,
        kind=PayloadKind.CALL_EVENT,
        received_at=datetime.now(UTC),
        content_type="application/json",
        call_id="70",
        payload=json.dumps(record, separators=(",", ":")),
    )
    return Record(value=env.to_json(), key=b"70")


async def test_a_paired_call_replayed_from_the_store_is_published_again(tmp_path: Path) -> None:
    app = create_service_app(
        "parser",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        bus_url=f"memory://{uuid.uuid4().hex}",
    )
    async with serving(app) as client:
        runtime = app.state.cdrflow.runtime
        repo = app.state.cdrflow.components["parser"].service.repo
        await runtime.bus.producer.send_many(topics.RAW, [_half(START), _half(END)])

        async def stored() -> bool:
            return (await client.get("/v1/cdrs/70")).status_code == 200

        await wait_for(stored, what="the paired call stored", timeout=15)
        summary = await replay_store(
            repo.raw_pages(datetime.fromtimestamp(0, UTC)), runtime.bus.producer
        )
        assert (summary.total, summary.accepted, summary.failed) == (1, 1, 0)

        consumer = await runtime.bus.consumer([topics.NORMALIZED], f"check-{uuid.uuid4().hex}")
        published: list[CDR] = []

        async def published_twice() -> bool:
            batch = await consumer.getmany(timeout_s=0.05, max_records=100)
            published.extend(CDR.from_json(m.value) for m in batch)
            return len(published) >= 2

        try:
            await wait_for(published_twice, what="the replayed call re-published", timeout=15)
        finally:
            await consumer.close()
        assert published[0] == published[1]
        assert (published[1].call_id, published[1].duration_s) == ("70", 1240)
        assert (await client.get("/v1/dead-letters")).json()["items"] == []
        assert (await client.get("/readyz")).status_code == 200

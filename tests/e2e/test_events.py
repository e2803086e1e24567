"""Call start/end events end to end on the deployed stack: ingest → Tansu → parser → PostgreSQL."""

from __future__ import annotations

import random
import uuid as uuidlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cdr_parser.models import cdrs
from cdrflow.platform import create_allinone_app, create_service_app
from cdrkit.bus import open_bus
from cdrkit.db import create_engine
from cdrmodel import CDR, topics
from tests.e2e.conftest import serving, wait_for


def _halves(n: int) -> list[dict[str, Any]]:
    base = datetime(2024, 2, 29, 21, 0, tzinfo=UTC)
    out: list[dict[str, Any]] = []
    for i in range(n):
        t0 = base + timedelta(seconds=7 * i)
        out.append(
            {
                "id": f"s{i}",
                "type": "start",
                "timestamp": t0.isoformat(),
                "call_id": f"e2e-{i}",
                "source": f"119{i:08d}",
                "destination": f"2133{i:06d}",
            }
        )
        out.append(
            {
                "id": f"e{i}",
                "type": "end",
                "timestamp": (t0 + timedelta(seconds=60 + i)).isoformat(),
                "call_id": f"e2e-{i}",
            }
        )
    return out


@pytest.mark.integration
async def test_events_pair_into_cdrs_on_postgres_and_kafka(
    fresh_pg_url: str, fresh_tansu: Any
) -> None:
    common = {"database_url": fresh_pg_url, "bus_url": fresh_tansu.url}
    ingest, parser = create_service_app("ingest", **common), create_service_app("parser", **common)
    rng = random.Random(11)
    halves = _halves(500)
    records = halves * 2  # the 1,000 halves of 500 calls, each twice, shuffled, in 2 lists
    rng.shuffle(records)
    async with serving(ingest) as icli, serving(parser) as pcli:
        # The worked example of ARCHITECTURE §6, end first, plus a contradicting second start.
        example = [
            {"id": "x2", "type": "end", "timestamp": "2016-02-29T22:17:53Z", "call_id": 70},
            {
                "id": "x1",
                "type": "start",
                "timestamp": "2016-02-29T21:57:13Z",
                "call_id": 70,
                "source": "99988526423",
                "destination": "9993468278",
            },
            {"id": "x3", "type": "start", "timestamp": "2016-02-29T21:57:13", "call_id": 71},
        ]
        resp = await icli.post("/v1/events", json=example)
        assert resp.status_code == 202, resp.text
        assert resp.json()["accepted"] == 2
        assert [r["error"] for r in resp.json()["rejected"]] == ["naive_timestamp"]
        lonely = {"id": "l1", "type": "end", "timestamp": "2016-03-01T10:00:00Z", "call_id": 72}
        contra = {**example[1], "id": "x4", "timestamp": "2016-02-29T21:57:14Z"}
        for body in (records[:1000], records[1000:], lonely):
            resp = await icli.post("/v1/events", json=body)
            assert resp.status_code == 202, resp.text
            assert resp.json()["rejected"] == []

        async def paired() -> bool:
            got = await pcli.get("/v1/cdrs/70")
            return got.status_code == 200

        await wait_for(paired, what="the worked example paired", timeout=60)
        # The contradicting start only after the example is paired: it must not overwrite it.
        assert (await icli.post("/v1/events", json=contra)).status_code == 202
        cdr = (await pcli.get("/v1/cdrs/70")).json()
        assert (cdr["source"], cdr["duration_s"], cdr["billsec_s"]) == ("call.event", 1240, 1240)
        assert (cdr["caller_number"], cdr["callee_number"]) == ("99988526423", "9993468278")

        engine = create_engine(fresh_pg_url)

        async def counted() -> int:
            async with engine.connect() as conn:
                return int(await conn.scalar(select(func.count()).select_from(cdrs)) or 0)

        async def all_paired() -> bool:
            return await counted() >= 501

        await wait_for(all_paired, what="500 calls + the example stored", timeout=90)

        async def dead_lettered() -> bool:
            items = (await pcli.get("/v1/dead-letters")).json()["items"]
            return any(d["error"] == "contradictory_start" for d in items)

        await wait_for(dead_lettered, what="the contradicting start dead-lettered", timeout=30)
        [letter] = (await pcli.get("/v1/dead-letters")).json()["items"]
        assert (letter["stage"], letter["call_id"]) == ("pair", "70")
        assert "already has a different start" in letter["reason"]

        pending = (await pcli.get("/v1/events/pending")).json()
        assert pending["total"] == 1
        assert [(p["call_id"], p["type"], p["id"]) for p in pending["items"]] == [
            ("72", "end", "l1")
        ]
        assert (await pcli.get("/v1/events/pending", params={"older_than": 3600})).json()[
            "total"
        ] == 0
        assert await counted() == 501
        await engine.dispose()

    # Every call is on cdr.normalized, keyed by its call id, with its duration.
    bus = open_bus(fresh_tansu.url)
    await bus.start()
    consumer = await bus.consumer([topics.NORMALIZED], f"check-{uuidlib.uuid4().hex}")
    seen: dict[str, CDR] = {}
    for _ in range(100):
        for msg in await consumer.getmany(timeout_s=0.5, max_records=5000):
            cdr_msg = CDR.from_json(msg.value)
            assert msg.key == cdr_msg.call_id.encode()
            seen[cdr_msg.call_id] = cdr_msg
        if len(seen) >= 501:
            break
    await consumer.close()
    await bus.close()
    assert set(seen) == {"70"} | {f"e2e-{i}" for i in range(500)}
    assert seen["e2e-499"].duration_s == 559


async def test_events_on_the_embedded_all_in_one(tmp_path: Path) -> None:
    app = create_allinone_app(data_dir=tmp_path, bus_url=f"memory://{uuidlib.uuid4().hex}")
    start = {
        "id": 1,
        "type": "start",
        "timestamp": "2016-02-29T21:57:13Z",
        "call_id": 70,
        "source": "99988526423",
        "destination": "9993468278",
    }
    end = {"id": 2, "type": "end", "timestamp": "2016-02-29T22:17:53Z", "call_id": 70}
    async with serving(app) as client:
        resp = await client.post("/v1/events", json=[end, start, end])
        assert (resp.status_code, resp.json()) == (202, {"accepted": 3, "rejected": []})

        async def paired() -> bool:
            return (await client.get("/v1/cdrs/70")).status_code == 200

        await wait_for(paired, what="call 70 paired")
        cdr = (await client.get("/v1/cdrs/70")).json()
        assert (cdr["duration_s"], cdr["disposition"], cdr["source"]) == (
            1240,
            "answered",
            "call.event",
        )
        raw = (await client.get("/v1/cdrs/70/raw")).json()
        assert raw == [start, end]
        assert (await client.get("/v1/events/pending")).json() == {"total": 0, "items": []}

"""Billing's consumer on a real Kafka-protocol broker (Tansu) and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from sqlalchemy import func, select

from cdr_billing.models import charges
from cdrflow.platform import create_service_app
from cdrkit.bus import Record, open_bus
from cdrkit.testing.tansu import TansuBroker
from cdrmodel import topics
from tests.billing.test_service import event_cdr
from tests.e2e.conftest import serving, wait_for


async def test_charges_from_kafka_once_with_rated(
    fresh_tansu: TansuBroker, fresh_pg_url: str, tmp_path: Path
) -> None:
    cdrs = [
        event_cdr(f"k{i}", "2018-02-28 21:57:13", "2018-02-28 22:17:53", caller=f"1199999{i:04d}")
        for i in range(50)
    ]
    bus = open_bus(fresh_tansu.url)
    await bus.start()
    await bus.ensure_topics(topics.ALL)
    records = [Record(c.to_json(), c.call_id.encode()) for c in cdrs]
    await bus.producer.send_many(topics.NORMALIZED, records + records[:10])  # 10 redelivered
    app = create_service_app(
        "billing", database_url=fresh_pg_url, bus_url=fresh_tansu.url, data_dir=tmp_path
    )
    async with serving(app) as client:

        async def charged() -> bool:
            r = await client.get("/v1/charges/k49")
            return r.status_code == 200

        await wait_for(charged, timeout=60, what="the last call to be charged")
        for c in cdrs[:3]:
            assert (await client.get(f"/v1/charges/{c.call_id}")).json()["amount"] == "0.54"
        async with app.state.cdrflow.runtime.engine.connect() as conn:
            n = await conn.scalar(select(func.count()).select_from(charges))
        assert n == 50
        bill = (await client.get("/v1/bills/11999990007?period=2018-02")).json()
        assert (bill["total"], len(bill["calls"])) == ("0.54", 1)

    consumer = await bus.consumer([topics.RATED], f"t-{uuid.uuid4().hex}")
    rated: dict[str, str] = {}

    async def all_rated() -> bool:
        for m in await consumer.getmany(timeout_s=0.5, max_records=500):
            value = json.loads(m.value)
            rated[value["call_id"]] = value["amount"]
        return len(rated) == 50

    await wait_for(all_rated, timeout=30, what="cdr.rated for every call")
    assert set(rated.values()) == {"0.54"}
    await consumer.close()
    await bus.close()

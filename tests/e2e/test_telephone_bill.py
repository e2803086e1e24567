"""The telephone-bill use case end to end, in one process: call start/end records posted to
ingest, paired by the parser, charged by billing, and listed on the subscriber's bill."""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

from cdrflow.platform import create_allinone_app
from tests.e2e.conftest import serving, wait_for

SUBSCRIBER = "99988526423"

# ARCHITECTURE §6's worked example (21:57:13 → 22:17:53 costs 0.54), a reduced-time call
# (only the standing charge) and a standard-time call of 35m42s (0.36 + 35 * 0.09 = 3.51),
# each posted end first and twice, as the API's senders do.
CALLS = [
    ("bill-1", "2024-03-10T21:57:13Z", "2024-03-10T22:17:53Z", "0.54", "0h20m40s"),
    ("bill-2", "2024-03-11T23:00:00Z", "2024-03-11T23:10:00Z", "0.36", "0h10m0s"),
    ("bill-3", "2024-03-12T10:00:00Z", "2024-03-12T10:35:42Z", "3.51", "0h35m42s"),
]


async def test_events_to_a_bill_in_the_all_in_one(tmp_path: Path) -> None:
    app = create_allinone_app(data_dir=tmp_path, bus_url=f"memory://{uuidlib.uuid4().hex}")
    records: list[dict[str, str]] = []
    for call_id, start, end, _price, _duration in CALLS:
        records.append({"id": f"{call_id}-e", "type": "end", "timestamp": end, "call_id": call_id})
        records.append(
            {
                "id": f"{call_id}-s",
                "type": "start",
                "timestamp": start,
                "call_id": call_id,
                "source": SUBSCRIBER,
                "destination": "2199999999",
            }
        )
    async with serving(app) as client:
        for _ in range(2):
            resp = await client.post("/v1/events", json=records)
            assert resp.status_code == 202, resp.text
            assert resp.json()["accepted"] == len(records)

        async def charged() -> bool:
            answers = [await client.get(f"/v1/charges/{c[0]}") for c in CALLS]
            return all(a.status_code == 200 for a in answers)

        await wait_for(charged, what="three charges", timeout=30)
        bill = (await client.get(f"/v1/bills/{SUBSCRIBER}", params={"period": "2024-03"})).json()
        assert bill["subscriber"] == SUBSCRIBER
        assert bill["period"] == "2024-03"
        assert bill["total"] == "4.41"
        lines = {line["call_id"]: line for line in bill["calls"]}
        assert set(lines) == {c[0] for c in CALLS}
        for call_id, _start, _end, price, duration in CALLS:
            assert lines[call_id]["amount"] == price
            assert lines[call_id]["duration"] == duration
            assert lines[call_id]["destination"] == "2199999999"
        assert lines["bill-1"]["price"] == "R$ 0,54"
        assert lines["bill-1"]["start_date"] == "2024-03-10"
        assert lines["bill-1"]["start_time"] == "21:57:13"
        # The same month in the other spelling, and a month with nothing in it.
        again = await client.get(f"/v1/bills/{SUBSCRIBER}", params={"period": "03/2024"})
        assert again.json()["total"] == "4.41"
        empty = (await client.get(f"/v1/bills/{SUBSCRIBER}", params={"period": "2024-02"})).json()
        assert empty["calls"] == []
        assert empty["total"] == "0.00"

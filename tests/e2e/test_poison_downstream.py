"""Poison isolation past the parser (issue 12, build 2): billing, stats and recordings consume
``cdr.normalized`` through the same consume loop, so a CDR their own store cannot take (here a
caller number longer than billing's column, which PostgreSQL refuses) is bisected out of its
batch and published to ``cdr.dlq`` with the error; the calls around it are charged and counted,
and no consumer stops."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from cdrflow.platform import create_allinone_app
from cdrkit.bus import Record
from cdrkit.metrics import POISON
from cdrmodel import CDR, DeadLetter, topics
from tests.e2e.conftest import serving, wait_for


def _cdr(call_id: str, caller: str) -> CDR:
    end = datetime.now(UTC).replace(microsecond=0)
    return CDR(
        call_id=call_id,
        source="freeswitch",
        leg="a",
        caller_number=caller,
        callee_number="1133334444",
        start_time=end - timedelta(seconds=90),
        answer_time=end - timedelta(seconds=80),
        end_time=end,
        duration_s=90,
        billsec_s=80,
        disposition="answered",
        received_at=end,
    )


async def test_a_cdr_billing_cannot_store_is_a_dead_letter_not_a_stopped_consumer(
    fresh_pg_url: str,
) -> None:
    app = create_allinone_app(database_url=fresh_pg_url, bus_url=f"memory://{uuid.uuid4().hex}")
    before = POISON.labels("billing")._value.get()
    async with serving(app) as client:
        for name in ("billing", "stats", "recordings"):
            app.state.cdrflow.components[name].loop.retry_initial_s = 0.01
        bus = app.state.cdrflow.runtime.bus
        dlq = await bus.consumer([topics.DLQ], f"check-{uuid.uuid4().hex}")
        calls = [_cdr("ok-1", "11933334444"), _cdr("long", "9" * 100), _cdr("ok-2", "1133335555")]
        await bus.producer.send_many(
            topics.NORMALIZED, [Record(c.to_json(), key=c.call_id.encode()) for c in calls]
        )

        async def charged() -> bool:
            codes = [(await client.get(f"/v1/charges/ok-{i}")).status_code for i in (1, 2)]
            return codes == [200, 200]

        await wait_for(charged, what="the calls around the poison charged", timeout=30)
        letters = [
            DeadLetter.model_validate_json(m.value)
            for m in await dlq.getmany(timeout_s=10, max_records=10)
        ]
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/v1/charges/long")).status_code == 404
    billing = [letter for letter in letters if letter.stage == "billing"]
    assert len(billing) == 1, letters
    assert billing[0].error == "poison"
    assert "value too long" in billing[0].reason or "StringDataRightTruncation" in billing[0].reason
    assert "9" * 100 in (billing[0].raw_value or "")
    assert POISON.labels("billing")._value.get() == before + 1

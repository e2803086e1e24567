"""No single message stops the parser (issue 12, finding 2).

A call paired from a 1950 start and a 2026 end, or a document stating a duration of centuries,
used to overflow PostgreSQL's INTEGER: the batch failed five times and the parser stopped, while
ingest kept answering 200 for CDRs nobody parsed. Now:

* a call longer than ``CDRFLOW_MAX_CALL_DURATION_S`` is a dead letter ``call_too_long`` (paired
  later, or as a document);
* anything else the store refuses in one message (here a post-dial delay of 115 days, past
  INTEGER milliseconds, which no check foresees) fails its batch, the consume loop bisects the
  batch down to that message and dead-letters it as ``poison`` with the database's reason; the
  rest of the batch is stored and the parser stays ready.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from cdr_parser.models import cdrs, dead_letters
from cdrflow.platform import create_service_app
from cdrkit.bus import Record
from cdrkit.metrics import POISON
from cdrmodel import Origin, PayloadKind, RawEnvelope, topics
from cdrmodel.envelope import sha256_hex
from tests.e2e.conftest import serving, wait_for

XML = (
    "<cdr><variables><uuid>{uid}</uuid><caller_id_number>1000</caller_id_number>"
    "<start_epoch>1700000000</start_epoch><end_epoch>1700000060</end_epoch>{extra}"
    "</variables></cdr>"
)


def _doc(uid: str, extra: str = "") -> bytes:
    payload = XML.format(uid=uid, extra=extra)
    return _envelope(PayloadKind.FREESWITCH_XML, payload, uid, "application/xml")


def _half(kind: str, call_id: str, at: str, event_id: int) -> bytes:
    record: dict[str, object] = {"id": event_id, "type": kind, "timestamp": at, "call_id": call_id}
    if kind == "start":
        record |= {"source": "11933334444", "destination": "1133334444"}
    return _envelope(PayloadKind.CALL_EVENT, json.dumps(record), call_id, "application/json")


def _envelope(kind: PayloadKind, payload: str, call_id: str, ctype: str) -> bytes:
    return RawEnvelope(
        id=uuid.uuid4().hex,
        kind=kind,
        received_at=datetime.now(UTC),
        source=Origin(remote_addr="127.0.0.1"),
        content_type=ctype,
        call_id=call_id,
        payload=payload,
        sha256=sha256_hex(payload),
    ).to_json()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


async def test_one_input_never_stops_the_parser(db_url: str) -> None:
    app = create_service_app("parser", database_url=db_url, bus_url=f"memory://{uuid.uuid4().hex}")
    postgres = db_url.startswith("postgresql")
    poison_before = POISON.labels("parser")._value.get()
    async with serving(app) as client:
        runtime = app.state.cdrflow.runtime
        loop = app.state.cdrflow.components["parser"].loop
        loop.retry_initial_s = 0.01
        first = [
            _doc("good-1"),
            _half("start", "c-1950", "1950-01-01T00:00:00Z", 1),
            _doc("centuries", "<duration>9999999999</duration>"),
            _doc("pdd-overflow", "<progressmsec>9999999999</progressmsec>"),
            _doc("good-2"),
        ]
        await runtime.bus.producer.send_many(topics.RAW, [Record(value=v) for v in first])
        # The end arrives later, in another batch: the pair is refused when it is made.
        await runtime.bus.producer.send_many(
            topics.RAW,
            [
                Record(value=_half("end", "c-1950", "2026-01-01T00:00:00Z", 2)),
                Record(value=_doc("good-3")),
            ],
        )

        async def all_handled() -> bool:
            if (await client.get("/v1/cdrs/good-3")).status_code != 200:
                return False
            page = (await client.get("/v1/dead-letters")).json()
            return len(page["items"]) == (3 if postgres else 2)

        await wait_for(all_handled, what="the CDRs behind the poison", timeout=30)
        assert (await client.get("/readyz")).status_code == 200
        async with runtime.engine.connect() as conn:
            stored = set((await conn.scalars(select(cdrs.c.call_id))).all())
            letters = {r.call_id: r for r in (await conn.execute(select(dead_letters))).all()}
    expected = {"good-1", "good-2", "good-3"} | (set() if postgres else {"pdd-overflow"})
    assert stored == expected
    assert letters["centuries"].error == "call_too_long"
    assert "9999999999 s (duration_s)" in letters["centuries"].reason
    assert letters["c-1950"].error == "call_too_long"
    assert "CDRFLOW_MAX_CALL_DURATION_S" in letters["c-1950"].reason
    if postgres:
        # Nothing foresaw it: the database refused it, the loop isolated it by bisection.
        assert letters["pdd-overflow"].error == "poison"
        assert "value out of int32 range" in letters["pdd-overflow"].reason
        assert letters["pdd-overflow"].envelope["payload"].count("9999999999") == 1
        assert POISON.labels("parser")._value.get() == poison_before + 1
    assert len(letters) == (3 if postgres else 2)

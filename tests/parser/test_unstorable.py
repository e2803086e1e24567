"""Records the store cannot hold as they are must be dead letters, never a stuck partition.

PostgreSQL enforces the column lengths of the CDR store and refuses NUL characters in text: a
CDR with an 80-character caller number, a ``%00`` in a variable, an envelope id longer than its
column or an undecodable message holding a NUL byte used to fail the whole batch on every
redelivery, until the consume loop stopped, so the good CDRs behind it were never stored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from cdr_parser.models import cdrs, dead_letters
from cdr_parser.repository import CdrRepository
from cdr_parser.service import ParserService
from cdr_parser.settings import ParserSettings
from cdrflow.platform import create_service_app
from cdrkit.bus import BusError, Record, open_bus
from cdrkit.bus.runner import StopConsuming
from cdrkit.db import create_engine, migrate, session_factory
from cdrkit.query import encode_cursor
from cdrmodel import Origin, PayloadKind, RawEnvelope, topics
from cdrmodel.envelope import sha256_hex
from tests.e2e.conftest import serving, wait_for

XML = (
    "<cdr><variables><uuid>{uid}</uuid><caller_id_number>{caller}</caller_id_number>"
    "<start_epoch>1700000000</start_epoch><end_epoch>1700000060</end_epoch></variables></cdr>"
)


def _envelope(uid: str, caller: str = "1000", *, envelope_id: str | None = None) -> bytes:
    payload = XML.format(uid=uid, caller=caller)
    return RawEnvelope(
        id=envelope_id or uuid.uuid4().hex,
        kind=PayloadKind.FREESWITCH_XML,
        received_at=datetime.now(UTC),
        source=Origin(remote_addr="127.0.0.1"),
        content_type="application/xml",
        call_id="h" * 200,  # a hostile ?uuid= hint: longer than dead_letters.call_id
        payload=payload,
        sha256=sha256_hex(payload),
    ).to_json()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


async def test_values_the_store_cannot_hold_are_dead_letters_not_a_stuck_batch(
    db_url: str,
) -> None:
    app = create_service_app("parser", database_url=db_url, bus_url=f"memory://{uuid.uuid4().hex}")
    async with serving(app) as client:
        runtime = app.state.cdrflow.runtime
        batch = [
            _envelope("long-caller", "9" * 80),
            _envelope("nul-caller", "10%0000"),
            _envelope("long-envelope-id", envelope_id="e" * 300),
            b"\x00 not an envelope",
            _envelope("unmappable").replace(b"start_epoch", b"no_epoch"),
            _envelope("good"),
        ]
        await runtime.bus.producer.send_many(topics.RAW, [Record(value=v) for v in batch])

        async def good_stored() -> bool:
            return (await client.get("/v1/cdrs/good")).status_code == 200

        await wait_for(good_stored, what="the good CDR behind the bad ones", timeout=15)
        assert (await client.get("/readyz")).status_code == 200
        async with runtime.engine.connect() as conn:
            stored = set((await conn.scalars(select(cdrs.c.call_id))).all())
            letters = (await conn.execute(select(dead_letters))).all()
        assert stored == {"good"}
        reasons = sorted((r.error, r.reason) for r in letters)
        assert [e for e, _ in reasons] == [
            "bad_envelope",
            "bad_envelope",
            "unmappable",
            "unstorable",
            "unstorable",
        ], reasons
        assert any("caller_number is 80 characters" in r for _, r in reasons)
        assert any("caller_number holds a NUL" in r for _, r in reasons)
        assert any("envelope_id is 300 characters" in r for _, r in reasons)
        for letter in letters:
            assert letter.call_id is None or len(letter.call_id) <= 128
            assert letter.raw_value is None or "\x00" not in letter.raw_value
        # The CDR refused for its caller number is kept whole in its dead letter, to retry.
        long_caller = next(r for r in letters if "80 characters" in r.reason)
        assert "9" * 80 in long_caller.envelope["payload"]


async def test_a_batch_retried_through_a_bus_outage_counts_once_in_the_flood_window(
    tmp_path: Path,
) -> None:
    settings = ParserSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'flood.db'}",
        flood_window=10,
        flood_ratio=0.9,
    )
    engine = create_engine(settings.database_url)
    await migrate(engine, "cdr_parser.migrations", "alembic_version_parser")
    bus = open_bus(f"memory://{uuid.uuid4().hex}")
    await bus.start()
    try:
        repo = CdrRepository(session_factory(engine), engine.dialect.name)
        service = ParserService(settings, repo, bus.producer)
        await bus.ensure_topics(topics.ALL)
        consumer = await bus.consumer([topics.RAW], "flood-test")
        await bus.producer.send(topics.RAW, b"one garbage message")
        batch = await consumer.getmany(timeout_s=5, max_records=10)
        assert len(batch) == 1
        # The bus goes away: the dead letter is stored but cannot be published, so the loop
        # retries the batch, again and again.
        await bus.close()
        for _ in range(12):
            with pytest.raises(BusError):
                await service.handle_batch(batch)
        await bus.start()
        await service.handle_batch(batch)  # one dead letter out of one record: no flood
        async with engine.connect() as conn:
            assert len((await conn.execute(select(dead_letters))).all()) == 1
        # A real flood still stops the consumer.
        flood = [Record(value=f"garbage {i}".encode()) for i in range(9)]
        await bus.producer.send_many(topics.RAW, flood)
        consumer = await bus.consumer([topics.RAW], "flood-test-2")
        batch = await consumer.getmany(timeout_s=5, max_records=100)
        assert len(batch) == 10
        with pytest.raises(StopConsuming):
            await service.handle_batch(batch[1:])
    finally:
        await bus.close()
        await engine.dispose()


async def test_hostile_queries_of_the_store_answer_4xx_not_500(fresh_pg_url: str) -> None:
    app = create_service_app(
        "parser", database_url=fresh_pg_url, bus_url=f"memory://{uuid.uuid4().hex}"
    )
    naive_cursor = encode_cursor(["2020-01-01T00:00:00", "x"])
    nul_cursor = encode_cursor(["2020-01-01T00:00:00+00:00", "a\x00"])
    huge_letter_cursor = encode_cursor([10**20])
    async with (
        app.router.lifespan_context(app),
        # A 500 is answered, as in production, instead of raised into the test.
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://cdrflow.test",
        ) as client,
    ):
        for path, status in [
            ("/v1/cdrs/a%00b", 400),
            ("/v1/cdrs/a%00b/raw", 400),
            ("/v1/cdrs?account=a%00", 400),
            ("/v1/cdrs?number=%00", 400),
            ("/v1/cdrs.csv?number=%00", 400),
            (f"/v1/cdrs?cursor={naive_cursor}", 400),
            (f"/v1/cdrs?cursor={nul_cursor}", 400),
            ("/v1/dead-letters/99999999999999999999", 422),
            (f"/v1/dead-letters?cursor={huge_letter_cursor}", 400),
            ("/v1/events/pending?older_than=1e300", 422),
            ("/v1/cdrs?sorce=hipath", 400),
            ("/v1/cdrs.csv?direction=inbound&tennant=x", 400),
            ("/v1/cdrs?direction=sideways", 422),
            ("/v1/cdrs?tenant=%00", 400),
            ("/v1/dead-letters?limit=5&page=2", 400),
            ("/v1/cdrs/no-such-call", 404),
            ("/v1/dead-letters/9223372036854775807", 404),
        ]:
            answer = await client.get(path)
            assert answer.status_code == status, (path, answer.status_code, answer.text)
            assert set(answer.json()) == {"error", "detail"}, path
        answer = await client.post("/v1/dead-letters/99999999999999999999/retry")
        assert answer.status_code == 422, answer.text
        answer = await client.get("/v1/cdrs", params={"source": "hipath", "sorce": "x"})
        assert answer.json()["error"] == "unknown_parameter"
        assert "'sorce'" in answer.json()["detail"]
        assert "source" in answer.json()["detail"]

"""Pairing call start/end halves into CDRs: any order, duplicates, contradictions, pending halves.

Runs the parser's real batch handler against a real database (SQLite and PostgreSQL) and a real
in-process bus, feeding it ``call.event`` envelopes as ingest publishes them.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_parser.models import call_event_halves, cdrs, dead_letters, raw_payloads
from cdr_parser.repository import CdrRepository
from cdr_parser.rows import stored_payload
from cdr_parser.service import ParserService
from cdr_parser.settings import ParserSettings
from cdrkit.bus import Bus, Message, open_bus
from cdrkit.db import create_engine, migrate, session_factory
from cdrmodel import CDR, PayloadKind, RawEnvelope, topics


def start(call_id: object, ts: str, src: str = "99988526423", dst: str = "9993468278") -> dict:
    return {
        "id": f"s{call_id}",
        "type": "start",
        "timestamp": ts,
        "call_id": call_id,
        "source": src,
        "destination": dst,
    }


def end(call_id: object, ts: str) -> dict:
    return {"id": f"e{call_id}", "type": "end", "timestamp": ts, "call_id": call_id}


@dataclass
class Harness:
    service: ParserService
    engine: AsyncEngine
    bus: Bus
    offset: int = 0
    group: str = field(default_factory=lambda: f"check-{uuid.uuid4().hex}")

    async def feed(self, *batches: list[dict[str, Any]]) -> None:
        """Each list is one consumed batch of records (one envelope per record)."""
        for records in batches:
            msgs = []
            for rec in records:
                env = RawEnvelope(
                    id=uuid.uuid4().hex,
                    kind=PayloadKind.CALL_EVENT,
                    received_at=datetime.now(UTC),
                    content_type="application/json",
                    call_id=str(rec.get("call_id")),
                    payload=json.dumps(rec),
                )
                msgs.append(
                    Message(topics.RAW, 0, self.offset, env.call_id.encode(), env.to_json())  # type: ignore[union-attr]
                )
                self.offset += 1
            await self.service.handle_batch(msgs)

    async def count(self, table: Any, *where: Any) -> int:
        async with self.engine.connect() as conn:
            query = select(func.count()).select_from(table)
            if where:
                query = query.where(*where)
            return int(await conn.scalar(query) or 0)

    async def dead(self) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(select(dead_letters))).all())

    async def normalized(self) -> list[CDR]:
        consumer = await self.bus.consumer([topics.NORMALIZED], self.group)
        try:
            found: list[CDR] = []
            while batch := await consumer.getmany(timeout_s=0.05, max_records=10_000):
                found += [CDR.from_json(m.value) for m in batch]
            return found
        finally:
            await consumer.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'events.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


@pytest.fixture
async def harness(db_url: str) -> AsyncIterator[Harness]:
    url = db_url
    engine = create_engine(url)
    await migrate(engine, "cdr_parser.migrations", "alembic_version_parser")
    bus = open_bus(f"memory://{uuid.uuid4().hex}")
    await bus.start()
    await bus.ensure_topics(topics.ALL)
    settings = ParserSettings(database_url=url, bus_url="memory://", flood_window=10_000)
    repo = CdrRepository(session_factory(engine), engine.dialect.name)
    yield Harness(ParserService(settings, repo, bus.producer), engine, bus)
    await bus.close()
    await engine.dispose()


async def test_the_worked_example_end_first_becomes_one_cdr_of_1240_s(harness: Harness) -> None:
    # ARCHITECTURE §6: 21:57:13 → 22:17:53. The end arrives first, in its own batch.
    await harness.feed([end(70, "2016-02-29T22:17:53Z")])
    assert await harness.count(cdrs) == 0
    total, rows = await harness.service.repo.pending_halves(datetime.now(UTC), limit=10)
    assert total == 1
    assert (rows[0].call_id, rows[0].type) == ("70", "end")

    await harness.feed([start(70, "2016-02-29T21:57:13Z")])
    row = await harness.service.repo.get("70")
    assert row is not None
    assert row.source == "call.event"
    assert row.caller_number == "99988526423"
    assert row.callee_number == "9993468278"
    assert row.start_time == datetime(2016, 2, 29, 21, 57, 13, tzinfo=UTC)
    assert row.answer_time == row.start_time
    assert row.end_time == datetime(2016, 2, 29, 22, 17, 53, tzinfo=UTC)
    assert (row.duration_s, row.billsec_s) == (1240, 1240)
    assert (row.disposition, row.leg) == ("answered", "a")
    assert (await harness.service.repo.pending_halves(datetime.now(UTC), limit=10))[0] == 0
    raw = await harness.service.repo.get_raw("70")
    assert [r["type"] for r in json.loads(stored_payload(raw) or "")] == ["start", "end"]
    published = await harness.normalized()
    assert [(c.call_id, c.duration_s) for c in published] == [("70", 1240)]


async def test_offsets_in_timestamps_are_instants(harness: Harness) -> None:
    # The same instants written with -03:00: the call is 1240 s and stored in UTC.
    await harness.feed(
        [start("br", "2016-02-29T18:57:13-03:00"), end("br", "2016-02-29T19:17:53-03:00")]
    )
    row = await harness.service.repo.get("br")
    assert row is not None
    assert row.start_time == datetime(2016, 2, 29, 21, 57, 13, tzinfo=UTC)
    assert row.duration_s == 1240


async def test_duplicates_in_one_batch_across_batches_and_after_pairing(harness: Harness) -> None:
    s, e = start("d1", "2017-12-12T04:57:13Z"), end("d1", "2017-12-12T06:10:56Z")
    # Both halves twice in one batch, the end first.
    await harness.feed([e, e, s, s])
    # Across batches, one half at a time, each twice.
    s2, e2 = start("d2", "2017-12-12T15:07:13Z"), end("d2", "2017-12-12T15:14:56Z")
    await harness.feed([s2], [s2], [e2], [e2])
    assert await harness.count(cdrs) == 2
    assert await harness.dead() == []
    # Late duplicates of both halves (the same records, and a resend under a new record id).
    await harness.feed([s], [{**e, "id": "another-id"}], [s2, e2])
    assert await harness.count(cdrs) == 2
    assert await harness.count(raw_payloads) == 2
    assert await harness.dead() == []
    assert await harness.count(call_event_halves) == 4
    assert await harness.count(call_event_halves, call_event_halves.c.paired_at.is_(None)) == 0
    # A late duplicate publishes the (identical) CDR again: a crash after the pairing commit
    # and before its publish must not lose the call downstream, which dedupes on the call id.
    published = await harness.normalized()
    assert {c.call_id for c in published} == {"d1", "d2"}
    assert len({c.to_json() for c in published if c.call_id == "d1"}) == 1
    assert (await harness.service.repo.get("d1")).duration_s == 4423  # type: ignore[union-attr]


async def test_contradictory_halves_go_to_the_dead_letters_with_the_reason(
    harness: Harness,
) -> None:
    await harness.feed(
        [
            start("c1", "2018-01-01T10:00:00Z"),
            start("c1", "2018-01-01T10:00:05Z"),  # a different time
            {**start("c1", "2018-01-01T10:00:00Z"), "destination": "1133334444"},  # numbers
            end("c2", "2018-01-01T11:00:00Z"),
        ],
        [end("c2", "2018-01-01T11:30:00Z")],  # a second, different end
        [start("c3", "2018-01-01T12:00:00Z")],
        [end("c3", "2018-01-01T11:59:59Z")],  # ends before it starts
    )
    letters = {(d.call_id, d.error): d for d in await harness.dead()}
    assert set(letters) == {
        ("c1", "contradictory_start"),
        ("c2", "contradictory_end"),
        ("c3", "end_before_start"),
    }
    assert len(await harness.dead()) == 4  # two contradicting starts for c1
    assert all(d.stage == "pair" and d.envelope for d in letters.values())
    assert "already has a different start" in letters["c1", "contradictory_start"].reason
    assert "2018-01-01T10:00:00+00:00" in letters["c1", "contradictory_start"].reason
    assert "before it starts" in letters["c3", "end_before_start"].reason
    assert await harness.count(cdrs) == 0
    # The first halves stay, waiting; a consistent other half still pairs them.
    total, _ = await harness.service.repo.pending_halves(datetime.now(UTC), limit=10)
    assert total == 3
    await harness.feed([end("c1", "2018-01-01T10:01:00Z"), end("c3", "2018-01-01T12:00:30Z")])
    assert (await harness.service.repo.get("c1")).duration_s == 60  # type: ignore[union-attr]
    assert (await harness.service.repo.get("c3")).duration_s == 30  # type: ignore[union-attr]
    # Redelivered, a rejected half is rejected again under the same dead letter.
    await harness.feed([start("c1", "2018-01-01T10:00:05Z")])
    assert await harness.count(cdrs) == 2
    assert len(await harness.dead()) == 5


async def test_a_bad_record_on_the_bus_is_a_dead_letter_of_the_map_stage(
    harness: Harness,
) -> None:
    await harness.feed([{**start("b1", "2018-01-01T10:00:00"), "id": "naive"}])
    [letter] = await harness.dead()
    assert (letter.stage, letter.error) == ("map", "naive_timestamp")


async def test_pending_lists_only_halves_older_than_asked(harness: Harness) -> None:
    await harness.feed([start("p1", "2019-03-01T10:00:00Z")])
    repo = harness.service.repo
    assert (await repo.pending_halves(datetime.now(UTC), limit=10))[0] == 1
    assert (await repo.pending_halves(datetime.now(UTC) - timedelta(hours=1), limit=10))[0] == 0


async def test_1000_shuffled_duplicated_halves_make_exactly_500_cdrs(harness: Harness) -> None:
    rng = random.Random(4)
    base = datetime(2020, 2, 28, 23, 0, tzinfo=UTC)
    halves: list[dict[str, Any]] = []
    for n in range(500):
        t0 = base + timedelta(minutes=n)
        halves.append(start(n, t0.isoformat(), src=f"11{n:09d}", dst=f"21{n:08d}"))
        halves.append(end(n, (t0 + timedelta(seconds=n)).isoformat()))
    records = halves + rng.sample(halves, 300)  # 1,300 records: every half, 300 twice
    rng.shuffle(records)
    batches, i = [], 0
    while i < len(records):
        size = rng.randint(1, 150)
        batches.append(records[i : i + size])
        i += size
    await harness.feed(*batches)
    assert await harness.count(cdrs) == 500
    assert await harness.count(cdrs, cdrs.c.source == "call.event") == 500
    assert await harness.dead() == []
    assert (await harness.service.repo.pending_halves(datetime.now(UTC), limit=1))[0] == 0
    row = await harness.service.repo.get("499")
    assert row is not None
    assert (row.duration_s, row.caller_number, row.callee_number) == (
        499,
        "11000000499",
        "2100000499",
    )
    assert {c.call_id for c in await harness.normalized()} == {str(n) for n in range(500)}

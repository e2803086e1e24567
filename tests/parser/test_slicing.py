"""A long parser batch gives the event loop back between messages (``cdrkit.pacing``), and what
it stores and publishes does not depend on where it yielded.

In ``cdrflow run`` the parser shares its event loop with ingest: a batch that mapped for 30-140 ms
without awaiting anything held every post arriving meanwhile (the all-in-one's ack p99,
docs/performance.md, fifth round)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import cdr_parser.service as parser_service
import cdrkit.pacing
from cdr_parser.models import cdrs, dead_letters
from cdr_parser.repository import CdrRepository
from cdr_parser.service import ParserService
from cdr_parser.settings import ParserSettings
from cdrkit.bus import Bus, Message, Record, open_bus
from cdrkit.db import create_engine, migrate, session_factory
from cdrmodel import Origin, PayloadKind, RawEnvelope, topics
from cdrmodel.envelope import sha256_hex
from tests.loop_hold import loop_hold

XML = (
    "<cdr><variables><uuid>{uid}</uuid><caller_id_number>{caller}</caller_id_number>"
    "<start_epoch>1700000000</start_epoch><end_epoch>1700000060</end_epoch></variables></cdr>"
)


def _envelope(uid: str, caller: str = "1000") -> bytes:
    payload = XML.format(uid=uid, caller=caller)
    return RawEnvelope(
        id=uuid.uuid5(uuid.NAMESPACE_URL, uid).hex,
        kind=PayloadKind.FREESWITCH_XML,
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        source=Origin(remote_addr="127.0.0.1"),
        content_type="application/xml",
        call_id=uid,
        payload=payload,
        sha256=sha256_hex(payload),
    ).to_json()


def _batch() -> list[bytes]:
    """40 calls, one repeated, one unmappable, one not an envelope at all."""
    values = [_envelope(f"call-{i:03d}", f"10{i:02d}") for i in range(40)]
    values.insert(7, _envelope("call-003", "1003"))
    values.insert(20, _envelope("unmappable").replace(b"start_epoch", b"no_epoch"))
    values.insert(30, b"not an envelope")
    return values


class Run:
    def __init__(self, service: ParserService, bus: Bus, engine: Any) -> None:
        self.service, self.bus, self.engine = service, bus, engine


@pytest.fixture
async def make_run(tmp_path: Path) -> AsyncIterator[Any]:
    opened: list[Run] = []

    async def make(name: str) -> Run:
        url = f"sqlite+aiosqlite:///{tmp_path / name}.db"
        engine = create_engine(url)
        await migrate(engine, "cdr_parser.migrations", "alembic_version_parser")
        bus = open_bus(f"memory://{uuid.uuid4().hex}")
        await bus.start()
        await bus.ensure_topics(topics.ALL)
        settings = ParserSettings(database_url=url, bus_url="memory://", flood_window=10_000)
        repo = CdrRepository(session_factory(engine), engine.dialect.name)
        run = Run(ParserService(settings, repo, bus.producer), bus, engine)
        opened.append(run)
        return run

    yield make
    for run in opened:
        await run.bus.close()
        await run.engine.dispose()


async def _handle(run: Run) -> list[Message]:
    """Produce the batch to cdr.raw, let the parser handle it as one batch; what it published."""
    await run.bus.producer.send_many(topics.RAW, [Record(value=v) for v in _batch()])
    consumer = await run.bus.consumer([topics.RAW], "parser-test")
    batch = await consumer.getmany(timeout_s=5, max_records=1000)
    assert len(batch) == 43
    await run.service.handle_batch(batch)
    out = await run.bus.consumer([topics.NORMALIZED, topics.DLQ], "reader")
    return await out.getmany(timeout_s=5, max_records=1000)


async def _stored(run: Run) -> tuple[list[Any], list[Any]]:
    async with run.engine.connect() as conn:
        rows = (await conn.execute(select(cdrs).order_by(cdrs.c.call_id))).all()
        letters = (await conn.execute(select(dead_letters.c.reason, dead_letters.c.offset))).all()
    drop = {"stored_at"}
    return (
        [{k: v for k, v in r._mapping.items() if k not in drop} for r in rows],
        sorted((r.reason, r.offset) for r in letters),
    )


async def test_yielding_before_every_message_stores_and_publishes_the_same(
    make_run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cdrkit.pacing, "SLICE_S", 1e9)  # never yields
    whole = await make_run("whole")
    whole_out = await _handle(whole)
    monkeypatch.setattr(cdrkit.pacing, "SLICE_S", 0.0)  # yields before every message
    sliced = await make_run("sliced")
    sliced_out = await _handle(sliced)

    def published(msgs: list[Message]) -> list[tuple[str, bytes | None, bytes]]:
        return [(m.topic, m.key, m.value) for m in msgs if m.topic == topics.NORMALIZED]

    assert len(published(whole_out)) == 40  # the repeated call once; the two bad ones not
    assert published(sliced_out) == published(whole_out)
    assert sum(m.topic == topics.DLQ for m in sliced_out) == 2
    assert sum(m.topic == topics.DLQ for m in whole_out) == 2
    stored_whole, letters_whole = await _stored(whole)
    stored_sliced, letters_sliced = await _stored(sliced)
    assert len(stored_whole) == 40
    assert stored_sliced == stored_whole
    assert letters_sliced == letters_whole


async def test_a_slow_batch_gives_the_loop_back_between_messages(
    make_run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mapping made to take 5 ms a message: 43 messages hold the loop for over 200 ms unsliced;
    sliced, another task gets the loop at least every few ms."""
    slow_outcome = parser_service.outcome_of

    def outcome_of(*args: Any) -> Any:
        time.sleep(0.005)
        return slow_outcome(*args)

    monkeypatch.setattr(parser_service, "outcome_of", outcome_of)
    run = await make_run("slow")
    async with loop_hold() as held:
        published = await _handle(run)
    assert sum(m.topic == topics.NORMALIZED for m in published) == 40
    # 40 mappings at 5 ms: >= 200 ms in one stretch without the slicer.
    assert held.longest_s < 0.1, f"the loop was held for {held.longest_s * 1000:.0f} ms"

"""The parser's XML parse done in a worker thread (``cdr_parser.ahead``, on in ``cdrflow run``)
stores, publishes and dead-letters exactly what the parse on the event loop does: every
verdict of the parse (not well-formed, a DOCTYPE, not a ``<cdr>``) with its reason, nothing lost,
the batch's order kept, across several chunks of the thread's hand-offs."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import select

import cdr_parser.ahead as ahead
import cdr_parser.freeswitch as freeswitch
from cdr_parser.models import cdrs, dead_letters
from cdr_parser.repository import CdrRepository
from cdr_parser.service import ParserService
from cdr_parser.settings import ParserSettings
from cdrkit.bus import Bus, Message, Record, open_bus
from cdrkit.db import create_engine, migrate, session_factory
from cdrkit.objects import object_key, open_object_store
from cdrmodel import Origin, PayloadKind, RawEnvelope, topics
from cdrmodel.envelope import sha256_hex
from cdrmodel.errors import NotWellFormed, UnmappableRecord, UnsafeDocument
from tests.parser.test_slicing import XML  # the same minimal mod_xml_cdr document

JSON = (
    '{{"variables": {{"uuid": "{uid}", "caller_id_number": "2000", '
    '"start_epoch": "1700000000", "end_epoch": "1700000060"}}}}'
)


def _envelope(
    uid: str,
    payload: str,
    kind: PayloadKind = PayloadKind.FREESWITCH_XML,
    ref: str | None = None,
) -> bytes:
    """An envelope of ``payload``, inline, or claim-checked at ``ref``."""
    return RawEnvelope(
        id=uuid.uuid5(uuid.NAMESPACE_URL, uid).hex,
        kind=kind,
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        source=Origin(remote_addr="127.0.0.1"),
        content_type="application/xml",
        call_id=uid,
        payload=None if ref else payload,
        payload_ref=ref,
        sha256=sha256_hex(payload),
    ).to_json()


def _call(i: int) -> bytes:
    uid = f"call-{i:03d}"
    return _envelope(uid, XML.format(uid=uid, caller=f"10{i:02d}"))


def _batch(claimed: dict[str, str]) -> list[bytes]:
    """60 calls (one repeated, one FreeSWITCH JSON, two claim-checked), and every verdict of the
    parse among them (one claim-checked too), plus an unmappable document and a value that is
    not an envelope; ``claimed``: the claim checks' references by call id."""
    values = [_call(i) for i in range(60)]
    values[13] = _envelope("call-013", JSON.format(uid="call-013"), PayloadKind.FREESWITCH_JSON)
    bad = {
        5: _envelope("broken", "<cdr><variables><uuid>broken</uuid></variables>"),
        11: _envelope("doctype", '<!DOCTYPE cdr [<!ENTITY x "y">]><cdr><variables/></cdr>'),
        17: _envelope("not-a-cdr", "<call><variables/></call>"),
        23: _envelope("empty", ""),
        29: _envelope("no-start", XML.format(uid="no-start", caller="1").replace("start_", "no_")),
        35: _call(3),  # the same call again
        41: b"not an envelope",
    }
    for i in (20, 40):
        uid = f"call-{i:03d}"
        values[i] = _envelope(uid, XML.format(uid=uid, caller=f"10{i:02d}"), ref=claimed[uid])
    bad[47] = _envelope("claimed-broken", "<cdr><variables>", ref=claimed["claimed-broken"])
    for at in sorted(bad):
        values.insert(at, bad[at])
    return values


CLAIMED = {
    "call-020": XML.format(uid="call-020", caller="1020"),
    "call-040": XML.format(uid="call-040", caller="1040"),
    "claimed-broken": "<cdr><variables>",
}


class Run:
    def __init__(self, service: ParserService, bus: Bus, engine: Any, refs: dict[str, str]) -> None:
        self.service, self.bus, self.engine, self.refs = service, bus, engine, refs


@pytest.fixture
async def make_run(tmp_path: Path) -> AsyncIterator[Any]:
    opened: list[Run] = []
    stack = contextlib.AsyncExitStack()

    async def make(name: str, in_thread: bool) -> Run:
        url = f"sqlite+aiosqlite:///{tmp_path / name}.db"
        engine = create_engine(url)
        await migrate(engine, "cdr_parser.migrations", "alembic_version_parser")
        bus = open_bus(f"memory://{uuid.uuid4().hex}?partitions=1")  # one order to compare
        await bus.start()
        await bus.ensure_topics(topics.ALL)
        settings = ParserSettings(
            database_url=url, bus_url="memory://", flood_window=10_000, parse_in_thread=in_thread
        )
        repo = CdrRepository(session_factory(engine), engine.dialect.name)
        store = await stack.enter_async_context(open_object_store(f"file://{tmp_path}/objects"))
        refs = {
            uid: await store.put(
                object_key("cdr-raw", uid, datetime(2026, 1, 1, tzinfo=UTC)), text.encode()
            )
            for uid, text in CLAIMED.items()
        }
        run = Run(ParserService(settings, repo, bus.producer, store), bus, engine, refs)
        opened.append(run)
        return run

    yield make
    for run in opened:
        await run.bus.close()
        await run.engine.dispose()
    await stack.aclose()


async def _handle(run: Run) -> list[Message]:
    """Produce the batch to cdr.raw, let the parser handle it as one batch; what it published."""
    values = _batch(run.refs)
    await run.bus.producer.send_many(topics.RAW, [Record(value=v) for v in values])
    consumer = await run.bus.consumer([topics.RAW], "parser-test")
    batch = await consumer.getmany(timeout_s=5, max_records=1000)
    assert len(batch) == len(values)
    await run.service.handle_batch(batch)
    out = await run.bus.consumer([topics.NORMALIZED, topics.DLQ], "reader")
    return await out.getmany(timeout_s=5, max_records=1000)


async def _stored(run: Run) -> tuple[list[Any], list[Any]]:
    async with run.engine.connect() as conn:
        rows = (await conn.execute(select(cdrs).order_by(cdrs.c.call_id))).all()
        letters = (
            await conn.execute(
                select(dead_letters.c.offset, dead_letters.c.error, dead_letters.c.reason)
            )
        ).all()
    return (
        [{k: v for k, v in r._mapping.items() if k != "stored_at"} for r in rows],
        sorted(tuple(r) for r in letters),
    )


def _published(msgs: list[Message], topic: str) -> list[tuple[bytes | None, bytes]]:
    return [(m.key, m.value) for m in msgs if m.topic == topic]


def _letters(msgs: list[Message]) -> list[tuple[int, str, str]]:
    out = []
    for _, value in _published(msgs, topics.DLQ):
        d = json.loads(value)
        out.append((d["offset"], d["error"], d["reason"]))
    return out


async def test_the_parse_in_a_thread_keeps_every_verdict_every_cdr_and_the_order(
    make_run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    parsed_in: list[int] = []
    parse_xml = freeswitch.parse_xml

    def spy(payload: bytes | str) -> etree._Element:
        parsed_in.append(threading.get_ident())
        return parse_xml(payload)

    monkeypatch.setattr(freeswitch, "parse_xml", spy)
    on_loop = await make_run("loop", in_thread=False)
    loop_out = await _handle(on_loop)
    assert parsed_in
    assert set(parsed_in) == {loop_thread}

    parsed_in.clear()
    # Chunks of a few documents each: the batch takes several hand-offs to the thread.
    monkeypatch.setattr(ahead, "CHUNK_CHARS", 600)
    handoffs: list[int] = []
    parse_all = ahead.parse_all

    def counted(texts: list[str]) -> list[Any]:
        handoffs.append(len(texts))
        return parse_all(texts)

    monkeypatch.setattr(ahead, "parse_all", counted)
    in_thread = await make_run("thread", in_thread=True)
    thread_out = await _handle(in_thread)
    assert len(handoffs) > 5
    assert sum(handoffs) == 63  # every inline XML envelope: not the JSON one, nor the claimed
    assert parsed_in
    assert loop_thread not in parsed_in

    normalized = _published(thread_out, topics.NORMALIZED)
    assert len(normalized) == 60  # 60 calls (the JSON one among them), the repeat once
    assert normalized == _published(loop_out, topics.NORMALIZED)  # the same CDRs, same order
    letters = _letters(thread_out)
    assert letters == _letters(loop_out)
    assert [error for _, error, _ in letters] == [
        "bad_envelope",  # dead-lettered while decoding, before the mapping
        NotWellFormed.code,
        UnsafeDocument.code,
        UnmappableRecord.code,
        NotWellFormed.code,
        UnmappableRecord.code,
        NotWellFormed.code,  # claim-checked: parsed in the thread too, one hand-off
    ]
    assert "DOCTYPE" in letters[2][2]
    assert "<call>" in letters[3][2]
    assert "start time" in letters[5][2]
    assert parsed_in.count(loop_thread) == 0
    assert len(parsed_in) == 66  # the 63 inline documents and the 3 claim-checked ones
    assert await _stored(in_thread) == await _stored(on_loop)


async def test_each_envelope_gets_its_own_documents_parse_across_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ahead, "CHUNK_CHARS", 500)
    envs: list[RawEnvelope | None] = []
    for i in range(30):
        if i % 7 == 3:
            envs.append(None)  # not decodable: skipped
        elif i % 5 == 4:
            raw = _envelope(f"j{i}", JSON.format(uid=f"j{i}"), PayloadKind.FREESWITCH_JSON)
            envs.append(RawEnvelope.from_json(raw))
        else:
            envs.append(RawEnvelope.from_json(_call(i)))
    parsed = ahead.ParsedAhead(envs)
    for i, env in enumerate(envs):
        got = await parsed.take(i)
        if env is None or env.kind is not PayloadKind.FREESWITCH_XML:
            assert got is None
        else:
            assert isinstance(got, etree._Element)
            assert freeswitch.xml_call_id(got) == f"call-{i:03d}"

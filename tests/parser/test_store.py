"""The parser's store: idempotent writes, partitions, listing plans, retention, dead letters."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from cdr_parser.models import cdr_keys, cdrs, dead_letters, raw_payloads
from cdr_parser.repository import CdrFilter, CdrRepository
from cdr_parser.retention import RetentionJob
from cdr_parser.rows import stored_payload
from cdr_parser.settings import ParserSettings
from cdrflow.mock import generate_cdr
from cdrflow.platform import create_service_app
from cdrkit.bus import Record
from cdrkit.db import create_engine, migrate, session_factory
from cdrkit.objects import ObjectNotFound, object_key, open_object_store
from cdrmodel import Origin, PayloadKind, RawEnvelope, topics
from cdrmodel.envelope import sha256_hex
from tests.e2e.conftest import serving, wait_for
from tests.metrics import sample

NOW = datetime.now(UTC)


def cdr_row(
    call_id: str,
    start: datetime,
    *,
    account: str | None = "acme",
    caller: str | None = "1000",
    callee: str | None = "2000",
    disposition: str | None = "answered",
    **more: Any,
) -> dict[str, Any]:
    row: dict[str, Any] = {c.name: None for c in cdrs.c}
    row.update(
        call_id=call_id,
        schema_version=1,
        source="freeswitch",
        start_time=start,
        account=account,
        caller_number=caller,
        callee_number=callee,
        disposition=disposition,
        extra={},
        stored_at=NOW,
    )
    row.update(more)
    return row


def raw_row(call_id: str, received_at: datetime, ref: str | None = None) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "envelope_id": uuid.uuid4().hex,
        "kind": "freeswitch.xml",
        "content_type": "application/xml",
        "sha256": sha256_hex("<cdr/>"),
        "payload": None if ref else "<cdr/>",
        "payload_ref": ref,
        "received_at": received_at,
        "stored_at": received_at,
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    await migrate(eng, "cdr_parser.migrations", "alembic_version_parser")
    yield eng
    await eng.dispose()


@pytest.fixture
def repo(engine: AsyncEngine) -> CdrRepository:
    return CdrRepository(session_factory(engine), engine.dialect.name)


async def _partition_of(engine: AsyncEngine, call_id: str) -> str:
    async with engine.connect() as conn:
        name = await conn.scalar(
            text("SELECT tableoid::regclass::text FROM cdrs WHERE call_id = :c"), {"c": call_id}
        )
    return str(name)


async def test_store_batch_is_idempotent_and_takes_any_start_time(
    repo: CdrRepository, engine: AsyncEngine
) -> None:
    starts = {
        "c2009": datetime(2009, 5, 20, 10, tzinfo=UTC),
        "cnow": NOW,
        "c2040": datetime(2040, 1, 2, tzinfo=UTC),
    }
    rows = [cdr_row(cid, start) for cid, start in starts.items()]
    raws = [raw_row(cid, NOW) for cid in starts]
    # The same call twice in one batch, then the whole batch again (a redelivery).
    assert await repo.store_batch([*rows, cdr_row("cnow", NOW)], raws, []) == set(starts)
    assert await repo.store_batch(rows, raws, []) == set()
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(cdrs)) == 3
        assert await conn.scalar(select(func.count()).select_from(raw_payloads)) == 3
    for cid, start in starts.items():
        got = await repo.get(cid)
        assert got is not None
        assert got.start_time == start
    assert await repo.get("no-such-call") is None
    if engine.dialect.name == "postgresql":
        assert await _partition_of(engine, "cnow") == f"cdrs_p{NOW:%Y%m}"
        assert await _partition_of(engine, "c2009") == "cdrs_default"
        assert await _partition_of(engine, "c2040") == "cdrs_default"
        async with engine.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(cdr_keys)) == 3


async def test_raw_payloads_are_stored_lz4_packed_and_read_back_exactly(
    repo: CdrRepository, engine: AsyncEngine
) -> None:
    """Migration 0008: the parser stores a raw document lz4-compressed (``payload_lz4``), and the
    readers (the raw endpoint's query, replay) get back exactly the text that came in, non-ASCII
    and a lone surrogate included (issue 15)."""
    _, xml = generate_cdr(random.Random(15), size_bytes=12_000)
    xml = xml.replace("</cdr>", "<note>caf\u00e9 \u20ac \U0001f4de \ud800</note></cdr>")
    raw = raw_row("lz4-call", NOW) | {"payload": xml, "sha256": sha256_hex("x")}
    assert await repo.store_batch([cdr_row("lz4-call", NOW)], [raw], []) == {"lz4-call"}
    async with engine.connect() as conn:
        text_col, packed = (
            await conn.execute(select(raw_payloads.c.payload, raw_payloads.c.payload_lz4))
        ).one()
        if engine.dialect.name == "postgresql":
            # EXTERNAL: PostgreSQL keeps the packed bytes as they are (no second compression).
            method = await conn.scalar(
                text("SELECT pg_column_compression(payload_lz4) FROM raw_payloads")
            )
            storage = await conn.scalar(
                text(
                    "SELECT attstorage::text FROM pg_attribute"
                    " WHERE attrelid = 'raw_payloads'::regclass AND attname = 'payload_lz4'"
                )
            )
            assert method is None
            assert storage == "e"
    assert text_col is None
    assert len(packed) < len(xml.encode("utf-8", "surrogatepass")) / 2
    stored = await repo.get_raw("lz4-call")
    assert stored_payload(stored) == xml


async def test_raw_payloads_stored_as_text_before_0008_are_still_read(
    repo: CdrRepository, engine: AsyncEngine
) -> None:
    """A row written before migration 0008 has its text in ``payload``: it reads as before."""
    async with engine.begin() as conn:
        await conn.execute(raw_payloads.insert().values(raw_row("old-call", NOW)))
    assert await repo.store_batch([], [raw_row("new-call", NOW)], []) == set()
    old, new = await repo.get_raw("old-call"), await repo.get_raw("new-call")
    assert (old.payload, old.payload_lz4) == ("<cdr/>", None)
    assert new.payload is None
    assert new.payload_lz4 is not None
    assert stored_payload(old) == stored_payload(new) == "<cdr/>"
    pages = [row async for page in repo.raw_pages(NOW - timedelta(days=1)) for row in page]
    assert sorted(stored_payload(r) for r in pages) == ["<cdr/>", "<cdr/>"]


async def test_concurrent_batches_store_each_call_once(
    repo: CdrRepository, engine: AsyncEngine
) -> None:
    rows = [cdr_row(f"k{i}", NOW - timedelta(minutes=i)) for i in range(200)]
    results = await asyncio.gather(*(repo.store_batch(rows, [], []) for _ in range(4)))
    assert set().union(*results) == {r["call_id"] for r in rows}
    assert sum(len(r) for r in results) == 200  # each call claimed by exactly one batch
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(cdrs)) == 200


def _generated(n: int, months: int, seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        start = NOW - timedelta(seconds=rng.randrange(months * 30 * 86400))
        caller = f"10{rng.randrange(20):02d}"
        # some calls have the same number on both sides: listed once for that number
        callee = caller if rng.random() < 0.05 else f"20{rng.randrange(20):02d}"
        if rows and i % 7 == 0:
            start = rows[-1]["start_time"]  # equal start times: the call id breaks the tie
        rows.append(
            cdr_row(
                f"g{i:05d}",
                start,
                account=rng.choice(["acme", "globex", "initech", None]),
                caller=caller,
                callee=callee,
                disposition=rng.choice(["answered", "answered", "busy", "failed", "no_answer"]),
                source=rng.choice(["freeswitch", "freeswitch", "hipath", "pexip"]),
                carrier=rng.choice(["trunk-1", "trunk-2", "gw-a", None]),
                tenant=rng.choice(["a.example", "b.example", None]),
                direction=rng.choice(["inbound", "outbound", "internal", None]),
            )
        )
    return rows


def _expected(rows: list[dict[str, Any]], flt: CdrFilter) -> list[str]:
    def keep(r: dict[str, Any]) -> bool:
        return (
            (flt.since is None or r["start_time"] >= flt.since)
            and (flt.until is None or r["start_time"] < flt.until)
            and (flt.account is None or r["account"] == flt.account)
            and (flt.number is None or flt.number in (r["caller_number"], r["callee_number"]))
            and all(
                getattr(flt, c) is None or r[c] == getattr(flt, c)
                for c in ("disposition", "source", "carrier", "tenant", "direction")
            )
        )

    kept = sorted(
        (r for r in rows if keep(r)), key=lambda r: (r["start_time"], r["call_id"]), reverse=True
    )
    return [r["call_id"] for r in kept]


FILTERS = [
    CdrFilter(),
    CdrFilter(account="globex"),
    CdrFilter(number="1003"),
    CdrFilter(number="2007", disposition="answered"),
    CdrFilter(disposition="failed"),
    CdrFilter(since=NOW - timedelta(days=40), until=NOW - timedelta(days=10)),
    CdrFilter(since=NOW - timedelta(days=100), number="1001"),
    CdrFilter(since=NOW - timedelta(days=100), account="acme", disposition="answered"),
    CdrFilter(source="hipath"),
    CdrFilter(carrier="trunk-2", direction="inbound"),
    CdrFilter(tenant="b.example", source="freeswitch"),
    CdrFilter(direction="internal", since=NOW - timedelta(days=60)),
]


async def test_keyset_pages_match_a_plain_sort(repo: CdrRepository) -> None:
    rows = _generated(400, months=4)
    await repo.store_batch(rows, [], [])
    for flt in FILTERS:
        got: list[str] = []
        after = None
        while True:
            page = await repo.list(flt, after=after, limit=9)
            got += [r.call_id for r in page]
            if len(page) < 9:
                break
            after = (page[-1].start_time, page[-1].call_id)
        assert got == _expected(rows, flt), flt
        assert got, f"the filter {flt} selects nothing: a weak test"


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += _plan_nodes(child)
    return nodes


async def _explain(
    pg_url: str, repo: CdrRepository, flt: CdrFilter, after: tuple[datetime, str] | None
) -> list[dict[str, Any]]:
    from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg

    compiled = repo.list_query(flt, after=after, limit=50).compile(dialect=pg_asyncpg.dialect())
    params = [compiled.params[name] for name in compiled.positiontup or []]
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute("SET enable_seqscan = off")
        await conn.execute("SET enable_bitmapscan = off")
        out = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {compiled.string}", *params)
    finally:
        await conn.close()
    return _plan_nodes(json.loads(out)[0]["Plan"])


async def test_listing_plans_are_index_scans_with_partition_pruning(
    fresh_pg_url: str,
) -> None:
    engine = create_engine(fresh_pg_url)
    await migrate(engine, "cdr_parser.migrations", "alembic_version_parser")
    repo = CdrRepository(session_factory(engine), "postgresql")
    await repo.ensure_partitions(NOW - timedelta(days=190), 7)  # six months back and ahead
    rows = _generated(4000, months=6, seed=5)
    for i in range(0, len(rows), 1000):
        await repo.store_batch(rows[i : i + 1000], [], [])
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE cdrs"))
        parts = set(
            (
                await conn.execute(
                    text(
                        "SELECT inhrelid::regclass::text FROM pg_inherits "
                        "WHERE inhparent = 'cdrs'::regclass"
                    )
                )
            ).scalars()
        )
    await engine.dispose()
    assert len(parts) >= 8
    mid = sorted(rows, key=lambda r: r["start_time"])[2000]
    deep = (mid["start_time"], mid["call_id"])
    window = CdrFilter(since=NOW - timedelta(days=45), until=NOW - timedelta(days=20))
    for flt, after in [
        (CdrFilter(), None),
        (CdrFilter(), deep),
        (CdrFilter(account="acme"), deep),
        (CdrFilter(number="1004"), None),
        (CdrFilter(disposition="failed"), deep),
        (CdrFilter(source="hipath"), deep),
        (CdrFilter(carrier="trunk-1"), None),
        (CdrFilter(tenant="a.example"), deep),
        (CdrFilter(direction="outbound"), None),
        (window, None),
        (CdrFilter(since=window.since, until=window.until, account="globex"), None),
    ]:
        nodes = await _explain(fresh_pg_url, repo, flt, after)
        scans = [n for n in nodes if "Relation Name" in n]
        assert scans, flt
        kinds = {n["Node Type"] for n in scans}
        assert kinds <= {"Index Scan", "Index Only Scan"}, (flt, kinds)
        scanned = {n["Relation Name"] for n in scans}
        assert scanned <= parts, scanned
        if flt.since is not None:
            # Only the partitions that overlap the window are read (two or three months).
            assert len(scanned) <= 3, (flt, scanned)
            assert "cdrs_default" not in scanned
        if after is not None:
            # A deep page (about three months back) never reads this month's partition.
            assert f"cdrs_p{NOW:%Y%m}" not in scanned, (flt, scanned)


async def test_get_by_call_id_reads_one_partition(fresh_pg_url: str) -> None:
    engine = create_engine(fresh_pg_url)
    await migrate(engine, "cdr_parser.migrations", "alembic_version_parser")
    repo = CdrRepository(session_factory(engine), "postgresql")
    await repo.ensure_partitions(NOW - timedelta(days=100), 5)
    rows = _generated(500, months=3)
    await repo.store_batch(rows, [], [])
    target = rows[123]
    async with engine.connect() as conn:
        query = select(cdrs).where(cdrs.c.call_id == target["call_id"])
        query = query.where(
            cdrs.c.start_time
            == select(cdr_keys.c.start_time)
            .where(cdr_keys.c.call_id == target["call_id"])
            .scalar_subquery()
        )
        compiled = query.compile(engine.sync_engine, compile_kwargs={"literal_binds": True})
        plan = await conn.scalar(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}"))
    await engine.dispose()
    nodes = _plan_nodes(plan[0]["Plan"])
    executed = {
        n["Relation Name"]
        for n in nodes
        if "Relation Name" in n and n["Relation Name"].startswith("cdrs") and n["Actual Loops"]
    }
    assert executed == {f"cdrs_p{target['start_time']:%Y%m}"}
    got = await CdrRepository(session_factory(create_engine(fresh_pg_url)), "postgresql").get(
        target["call_id"]
    )
    assert got is not None
    assert got.call_id == target["call_id"]


def _alembic(conn: Connection, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("cdr_parser.migrations")))
    cfg.attributes["connection"] = conn
    cfg.attributes["version_table"] = "alembic_version_parser"
    command.upgrade(cfg, revision)


async def test_migration_moves_an_issue2_table_into_partitions(fresh_pg_url: str) -> None:
    engine = create_engine(fresh_pg_url)
    async with engine.begin() as conn:
        await conn.run_sync(_alembic, "0001")
    old = [
        cdr_row("old2009", datetime(2009, 5, 20, tzinfo=UTC)),
        cdr_row("oldnow", NOW),
        cdr_row("old2024", datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)),
    ]
    async with engine.begin() as conn:
        await conn.execute(cdrs.insert(), old)
        await conn.execute(
            dead_letters.insert(),
            [
                {
                    "dedup_key": "map:e1",
                    "stage": "map",
                    "error": "unmappable",
                    "reason": "no start time",
                    "created_at": NOW,
                }
            ],
        )
    await migrate(engine, "cdr_parser.migrations", "alembic_version_parser")
    async with engine.connect() as conn:
        strategy = await conn.scalar(
            text(
                "SELECT partstrat::text FROM pg_partitioned_table "
                "WHERE partrelid = 'cdrs'::regclass"
            )
        )
        assert strategy == "r"
        assert await conn.scalar(select(func.count()).select_from(cdr_keys)) == 3
        letter = (await conn.execute(select(dead_letters))).one()
        assert letter.retry_count == 0
        assert letter.last_failed_at == NOW
    assert await _partition_of(engine, "old2009") == "cdrs_p200905"
    assert await _partition_of(engine, "old2024") == "cdrs_p202402"
    assert await _partition_of(engine, "oldnow") == f"cdrs_p{NOW:%Y%m}"
    repo = CdrRepository(session_factory(engine), "postgresql")
    assert await repo.store_batch(old, [], []) == set()  # still idempotent on the old calls
    got = await repo.get("old2024")
    assert got is not None
    assert got.start_time == old[2]["start_time"]
    await engine.dispose()


async def test_a_new_partition_takes_its_rows_out_of_the_default(fresh_pg_url: str) -> None:
    engine = create_engine(fresh_pg_url)
    await migrate(engine, "cdr_parser.migrations", "alembic_version_parser")
    repo = CdrRepository(session_factory(engine), "postgresql")
    future = datetime(2040, 1, 31, 23, 59, tzinfo=UTC)
    await repo.store_batch(
        [cdr_row("f1", future), cdr_row("f2", future + timedelta(minutes=2))], [], []
    )
    assert await _partition_of(engine, "f1") == "cdrs_default"
    assert await repo.ensure_partitions(future, 0) == ("cdrs_p204001",)
    assert await repo.ensure_partitions(future, 0) == ()  # already there
    assert await _partition_of(engine, "f1") == "cdrs_p204001"
    assert await _partition_of(engine, "f2") == "cdrs_default"  # February stays in the default
    await engine.dispose()


async def test_retention_purges_old_raw_payloads_in_chunks(
    repo: CdrRepository, engine: AsyncEngine
) -> None:
    old, fresh = NOW - timedelta(days=8), NOW - timedelta(days=6)
    rows = [cdr_row(f"r{i}", NOW) for i in range(30)]
    raws = [
        raw_row(
            f"r{i}", old if i < 23 else fresh, ref=f"file:///objects/r{i}" if i % 5 == 0 else None
        )
        for i in range(30)
    ]
    await repo.store_batch(rows, raws, [])
    job = RetentionJob(ParserSettings(retention_chunk_rows=4), repo)
    purged = await job.run_once(NOW)
    assert purged.rows == 23
    assert sorted(purged.payload_refs) == sorted(
        f"file:///objects/r{i}" for i in (0, 5, 10, 15, 20)
    )
    async with engine.connect() as conn:
        left = set((await conn.execute(select(raw_payloads.c.call_id))).scalars())
        assert left == {f"r{i}" for i in range(23, 30)}
        assert await conn.scalar(select(func.count()).select_from(cdrs)) == 30  # CDRs stay
    assert (await job.run_once(NOW)).rows == 0


async def test_retention_deletes_the_claim_check_objects_of_purged_rows(
    repo: CdrRepository, tmp_path: Path
) -> None:
    async with open_object_store(f"file://{tmp_path / 'objects'}") as store:
        old_ref = await store.put(object_key("cdr-raw", "old1", NOW), b"<cdr>old</cdr>")
        new_ref = await store.put(object_key("cdr-raw", "new1", NOW), b"<cdr>new</cdr>")
        await repo.store_batch(
            [cdr_row("old1", NOW), cdr_row("new1", NOW)],
            [
                raw_row("old1", NOW - timedelta(days=8), ref=old_ref),
                raw_row("new1", NOW - timedelta(days=1), ref=new_ref),
            ],
            [],
        )
        job = RetentionJob(ParserSettings(), repo, store)
        assert (await job.run_once(NOW)).payload_refs == [old_ref]

        with pytest.raises(ObjectNotFound):
            await store.get(old_ref)
        assert await store.get(new_ref) == b"<cdr>new</cdr>"


async def _app_and_repo(db_url: str, **settings: Any) -> Any:
    return create_service_app(
        "parser", database_url=db_url, bus_url=f"memory://{uuid.uuid4().hex}", **settings
    )


async def test_raw_endpoint_answers_410_once_the_job_purged_it(fresh_pg_url: str) -> None:
    app = await _app_and_repo(fresh_pg_url, retention_interval_s=0.2)
    purged_before = sample("cdrflow_parser_raw_purged_total")
    runs = sample("cdrflow_parser_retention_runs_total", outcome="ok")
    async with serving(app) as client:
        repo = app.state.cdrflow.components["parser"].service.repo
        await repo.store_batch(
            [cdr_row("gone1", NOW), cdr_row("kept1", NOW)],
            [raw_row("gone1", NOW - timedelta(days=7, minutes=1)), raw_row("kept1", NOW)],
            [],
        )

        async def purged() -> bool:
            return await repo.get_raw("gone1") is None

        await wait_for(purged, what="the retention job purging gone1", timeout=10)
        gone = await client.get("/v1/cdrs/gone1/raw")
        assert gone.status_code == 410
        assert gone.json()["error"] == "gone"
        assert "retention" in gone.json()["detail"]
        assert (await client.get("/v1/cdrs/gone1")).status_code == 200
        unknown = await client.get("/v1/cdrs/nope/raw")
        assert unknown.status_code == 404
        assert unknown.json()["error"] == "not_found"
        kept = await client.get("/v1/cdrs/kept1/raw")
        assert kept.status_code == 200
        assert kept.text == "<cdr/>"
        assert sample("cdrflow_parser_raw_purged_total") == purged_before + 1
        assert sample("cdrflow_parser_retention_runs_total", outcome="ok") > runs


def _envelope(payload: str, call_id: str | None = None) -> RawEnvelope:
    return RawEnvelope(
        id=uuid.uuid4().hex,
        kind=PayloadKind.FREESWITCH_XML,
        received_at=NOW,
        source=Origin(remote_addr="127.0.0.1"),
        content_type="application/xml",
        call_id=call_id,
        payload=payload,
        sha256=sha256_hex(payload),
    )


async def test_dead_letter_detail_and_retry(db_url: str) -> None:
    app = await _app_and_repo(db_url)
    async with serving(app) as client:
        runtime = app.state.cdrflow.runtime
        repo = app.state.cdrflow.components["parser"].service.repo
        bad = _envelope("<cdr><variables><uuid>nostart</uuid></variables></cdr>", "nostart")
        await runtime.bus.producer.send_many(
            topics.RAW,
            [Record(value=bad.to_json()), Record(value=b"not json at all")],
        )

        async def two_letters() -> bool:
            return len((await client.get("/v1/dead-letters")).json()["items"]) == 2

        await wait_for(two_letters, what="two dead letters", timeout=15)
        items = (await client.get("/v1/dead-letters")).json()["items"]
        by_error = {i["error"]: i for i in items}
        unmappable, undecodable = by_error["unmappable"], by_error["bad_envelope"]

        detail = await client.get(f"/v1/dead-letters/{unmappable['id']}")
        assert detail.status_code == 200
        assert "start time" in detail.json()["reason"]
        assert detail.json()["envelope"]["id"] == bad.id
        assert detail.json()["retry_count"] == 0

        missing = await client.get("/v1/dead-letters/999999")
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"
        missing = await client.post("/v1/dead-letters/999999/retry")
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"
        nothing = await client.post(f"/v1/dead-letters/{undecodable['id']}/retry")
        assert nothing.status_code == 409
        assert nothing.json()["error"] == "nothing_to_retry"
        assert nothing.json()["detail"]

        # Still unmappable: it dead-letters again, on the same row, with a fresh failure time.
        retried = await client.post(f"/v1/dead-letters/{unmappable['id']}/retry")
        assert retried.status_code == 200, retried.text
        assert retried.json()["retry_count"] == 1
        retried_at = datetime.fromisoformat(retried.json()["retried_at"])

        async def failed_again() -> bool:
            row = (await client.get(f"/v1/dead-letters/{unmappable['id']}")).json()
            return datetime.fromisoformat(row["last_failed_at"]) > retried_at

        await wait_for(failed_again, what="the retried letter failing again", timeout=15)
        assert len((await client.get("/v1/dead-letters")).json()["items"]) == 2

        # A letter an older, buggy mapper dead-lettered: a retry now stores the CDR.
        call_id, xml = generate_cdr(random.Random(1))
        good = _envelope(xml, call_id)
        await repo.store_batch(
            [],
            [],
            [
                {
                    "dedup_key": f"map:{good.id}",
                    "envelope_id": good.id,
                    "call_id": call_id,
                    "stage": "map",
                    "error": "mapper_error",
                    "reason": "KeyError: 'caller_id_number' (a mapper bug since fixed)",
                    "envelope": good.model_dump(mode="json", exclude_none=True),
                    "created_at": NOW - timedelta(hours=1),
                }
            ],
        )
        letter_id = (await client.get("/v1/dead-letters")).json()["items"][0]["id"]
        assert (await client.post(f"/v1/dead-letters/{letter_id}/retry")).status_code == 200

        async def stored() -> bool:
            return (await client.get(f"/v1/cdrs/{call_id}")).status_code == 200

        await wait_for(stored, what="the retried CDR stored", timeout=15)
        raw = await client.get(f"/v1/cdrs/{call_id}/raw")
        assert raw.text == xml
        row = (await client.get(f"/v1/dead-letters/{letter_id}")).json()
        # the retry went through: no failure since it
        assert datetime.fromisoformat(row["last_failed_at"]) < datetime.fromisoformat(
            row["retried_at"]
        )


async def test_a_flood_of_dead_letters_stops_the_consumer_and_turns_consumer_readiness_red(
    tmp_path: Path,
) -> None:
    app = await _app_and_repo(
        f"sqlite+aiosqlite:///{tmp_path / 'flood.db'}",
        flood_window=20,
        flood_ratio=0.9,
        batch_size=10,
    )
    async with serving(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        runtime = app.state.cdrflow.runtime
        records = [Record(value=f"garbage {i}".encode()) for i in range(300)]
        await runtime.bus.producer.send_many(topics.RAW, records)

        async def red() -> bool:
            return (await client.get("/readyz/consumers")).status_code == 503

        await wait_for(red, what="/readyz/consumers turning red", timeout=15)
        body = (await client.get("/readyz/consumers")).json()
        assert body["status"] == "not_consuming"
        assert any("dead letters" in p for p in body["problems"]), body
        # The read API stays in service: /readyz is about answering requests.
        assert (await client.get("/readyz")).json() == {"status": "ready"}
        await asyncio.sleep(0.5)
        engine = runtime.engine
        async with engine.connect() as conn:
            stored = await conn.scalar(select(func.count()).select_from(dead_letters))
        # It stopped after the window filled, instead of draining the topic.
        assert 20 <= stored < 300


async def test_sqlite_store_is_two_plain_statements_storing_what_an_orm_insert_stores(
    tmp_path: Path,
) -> None:
    """The all-in-one's store (SQLite): a batch's CDRs and raw payloads go as one multi-row
    statement each (``cdrkit.db.sqlite_values``), not SQLAlchemy's executemany (its per-row
    parameter processing on the event loop, issue 15, sixth round), and the rows stored are
    those SQLAlchemy's own insert stores from the same values (bind processors: UTC datetimes,
    JSON, the lz4-packed payload)."""
    from sqlalchemy import event

    from cdr_parser.rows import pack_raw

    rows = [
        cdr_row(
            f"call-{i}",
            NOW - timedelta(minutes=i),
            answer_time=NOW - timedelta(minutes=i, seconds=-3),
            end_time=NOW,
            caller_name="Zoë \u20ac",
            extra={"k": [i, "\u00e9"], "n": None},
            billsec_s=i,
            received_at=NOW,
        )
        for i in range(40)
    ]
    raws = [raw_row(f"call-{i}", NOW) | {"payload": f"<cdr n='{i}'>é</cdr>"} for i in range(40)]
    stored: dict[str, list[Any]] = {}
    for how in ("store_batch", "orm"):
        eng = create_engine(f"sqlite+aiosqlite:///{tmp_path / how}.db")
        await migrate(eng, "cdr_parser.migrations", "alembic_version_parser")
        statements: list[tuple[str, bool]] = []

        def seen(
            conn: Any,
            cursor: Any,
            sql: str,
            params: Any,
            ctx: Any,
            many: bool,
            into: list[tuple[str, bool]] = statements,
        ) -> None:
            into.append((sql.split("(", 1)[0].strip(), many))

        event.listen(eng.sync_engine, "before_cursor_execute", seen)
        if how == "store_batch":
            repo = CdrRepository(session_factory(eng), "sqlite")
            new = await repo.store_batch([*rows, rows[0]], raws, [])
            assert new == {r["call_id"] for r in rows}
            inserts = [s for s in statements if s[0].startswith("INSERT")]
            assert inserts == [("INSERT INTO cdrs", False), ("INSERT INTO raw_payloads", False)]
            assert await repo.store_batch(rows, raws, []) == set()  # a redelivery
        else:
            async with eng.begin() as conn:
                await conn.execute(cdrs.insert(), rows)
                await conn.execute(raw_payloads.insert(), [pack_raw(r) for r in raws])
        async with eng.connect() as conn:
            stored[how] = [
                (await conn.execute(text(f"SELECT * FROM {t} ORDER BY call_id"))).all()
                for t in ("cdrs", "raw_payloads")
            ]
        await eng.dispose()
    assert stored["store_batch"] == stored["orm"]
    assert len(stored["orm"][0]) == len(stored["orm"][1]) == 40

"""The stack's floor: the least the fixed stack (FastAPI + uvicorn, aiokafka, lxml, asyncpg) spends
on a CDR doing only what the contract cannot do without, to measure cdrflow against in
``python -m bench e2e floor``.

Four roles, one per process like ``cdrflow serve`` (``FLOOR_ROLE``), each a uvicorn app with
``/readyz`` and a ``/metrics`` that says what it has done in cdrflow's own counter names (so the
e2e harness reads its progress the same way):

* ``ingest``: ``POST /v1/cdr`` reads the body (as the bare endpoint does), decodes the url-encoded
  ``cdr`` field (the quoted-printable trick, C), checks the document is well-formed (libxml2 with a
  target that builds nothing: a malformed CDR must get a 4xx), produces the document to Kafka with
  the call id as key (zstd, ``acks=all``, the producer settings of cdrflow's bus) and answers 200
  once the broker has it: the acknowledgement is durable.
* ``parser``: consumes in batches (topped up for 20 ms, as cdrflow's loop), parses each document
  into a tree (the safe options cdrflow uses), reads every variable and the caller profile into a
  dictionary, stores the record's columns with the raw document lz4-packed (it keeps every
  variable) in one idempotent statement
  (``INSERT ... SELECT FROM unnest ... ON CONFLICT DO NOTHING``: redelivery changes nothing),
  produces the normalised record as JSON, then commits the offsets.
* ``billing``: consumes the normalised records, decodes the JSON, prices the call by the longest
  matching destination prefix and stores the charge idempotently.
* ``stats``: consumes the normalised records, decodes the JSON, inserts the call ids it has not
  seen (idempotent) and adds those to their 6-minute bucket's counts.
* ``allinone``: one process, as ``cdrflow run``: ingest's work, then the document appended to a
  log file and fsync'd (group commit in a worker thread) before the 200; a task takes what the log
  holds in batches, parses and reads each document as the parser role does and, in a worker
  thread, stores, prices and counts the batch in one SQLite transaction (WAL, synchronous=NORMAL,
  the settings of cdrflow's all-in-one), idempotent on the call id; no second log for the
  normalised records (cdrflow's all-in-one keeps its topics, so this is a lower bound too).

What it leaves out, so it is a lower bound and not a product: authentication, the duplicate
window, the spool fallback, the envelope's metadata, validation of the CDR's fields, dead
letters, the tables' secondary indexes, rating plans, the stats' figures beyond counts,
request metrics. cdrflow's processes do all of that; the floor says what the libraries alone cost.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote_to_bytes

import asyncpg
import cramjam
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from lxml import etree

from cdrkit.xml import SAFE_PARSER

ROLE = os.environ.get("FLOOR_ROLE", "ingest")
BOOTSTRAP = os.environ.get("FLOOR_BOOTSTRAP", "127.0.0.1:9092")
DSN = os.environ.get("FLOOR_DSN", "postgresql://postgres@127.0.0.1/floor")
DIR = os.environ.get("FLOOR_DIR", "./var/floor")  # the all-in-one's log and SQLite file
RAW, CDR = "floor.raw", "floor.cdr"
PARTITIONS = 4
GATHER_S = 0.02
BATCH = 500

DDL = """
CREATE TABLE IF NOT EXISTS cdrs (
    call_id text PRIMARY KEY, caller text, callee text, direction text, hangup_cause text,
    started_at double precision, answered_at double precision, ended_at double precision,
    billsec integer, raw_lz4 bytea);
ALTER TABLE cdrs ALTER COLUMN raw_lz4 SET STORAGE EXTERNAL;
CREATE TABLE IF NOT EXISTS charges (call_id text PRIMARY KEY, amount numeric, currency text);
CREATE TABLE IF NOT EXISTS seen (call_id text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS buckets (
    bucket bigint, hangup_cause text, calls bigint, PRIMARY KEY (bucket, hangup_cause));
"""


class _State:
    acked = 0  # CDRs answered 200 (ingest, all-in-one)
    done = 0  # CDRs this process has finished (stored, charged or counted)
    producer: AIOKafkaProducer | None = None
    log: _Log | None = None  # the all-in-one's


state = _State()


# ---------------------------------------------------------------------------------------------
# ingest


class _Nothing:
    """A parser target with no callbacks: libxml2 checks the document and builds nothing."""

    def close(self) -> None:
        return None


_CHECK = etree.XMLParser(
    target=_Nothing(),  # type: ignore[arg-type]
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=True,
)
_QP = bytes.maketrans(b"%+", b"= ")


def form_field(body: bytes) -> bytes | None:
    """The decoded ``cdr=`` field of a url-encoded form whose only field it is."""
    if not body.startswith(b"cdr="):
        return None
    value = body[4:]
    if b"=" not in value and b"\n" not in value and b"\r" not in value:
        out = binascii.a2b_qp(value.translate(_QP))
        if len(value) - len(out) == 2 * value.count(b"%"):
            return out
    return unquote_to_bytes(value.replace(b"+", b" "))


async def post_cdr(request: Request) -> JSONResponse:
    body = await request.body()
    doc = form_field(body)
    if not doc:
        return JSONResponse({"error": "no cdr field"}, status_code=400)
    try:
        etree.fromstring(doc, _CHECK)
    except etree.XMLSyntaxError as exc:
        return JSONResponse({"error": f"not well-formed: {exc.msg}"}, status_code=422)
    query = request.scope["query_string"]
    key = query[5:] if query.startswith(b"uuid=") else None
    if state.log is not None:  # all-in-one: on disk (group commit) before the answer
        await state.log.append(doc)
    else:
        assert state.producer is not None
        await (await state.producer.send(RAW, doc, key=key))
    state.acked += 1
    return JSONResponse({"status": "accepted", "call_id": key.decode() if key else None})


# ---------------------------------------------------------------------------------------------
# parser

# cdrflow's own parser configuration (an lxml object: the options, no cdrflow code per document).
_TREE = SAFE_PARSER
_COLUMNS = (
    "call_id",
    "caller",
    "callee",
    "direction",
    "hangup_cause",
    "started_at",
    "answered_at",
    "ended_at",
    "billsec",
)

_STORE = """
INSERT INTO cdrs SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
    $6::float8[], $7::float8[], $8::float8[], $9::int[], $10::bytea[])
ON CONFLICT DO NOTHING
"""


def _num(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def normalise(doc: bytes) -> tuple[dict[str, Any], bytes]:
    """The record and the packed raw document (which keeps every variable: the record need not)."""
    root = etree.fromstring(doc, _TREE)
    variables = root.find("variables")
    names: dict[str, str | None] = (
        {child.tag: child.text for child in variables} if variables is not None else {}
    )
    profile = root.find("callflow/caller_profile")
    caller = profile.findtext("caller_id_number") if profile is not None else None
    callee = profile.findtext("destination_number") if profile is not None else None
    record = {
        # 2009-era documents have no uuid variable; the caller profile always has one.
        "call_id": names.get("uuid") or (profile.findtext("uuid") if profile is not None else None),
        "caller": caller or names.get("caller_id_number"),
        "callee": callee or names.get("destination_number"),
        "direction": names.get("direction"),
        "hangup_cause": names.get("hangup_cause"),
        "started_at": _num(names.get("start_epoch")),
        "answered_at": _num(names.get("answer_epoch")),
        "ended_at": _num(names.get("end_epoch")),
        "billsec": int(_num(names.get("billsec")) or 0),
    }
    return record, bytes(cramjam.lz4.compress_block(doc))


async def parse_batch(pool: asyncpg.Pool, producer: AIOKafkaProducer, values: list[bytes]) -> None:
    rows = [normalise(v) for v in values]
    keep = [(r, raw) for r, raw in rows if r["call_id"]]
    records = [r for r, _ in keep]
    columns: list[list[Any]] = [[r[c] for r, _ in keep] for c in _COLUMNS]
    columns.append([raw for _, raw in keep])
    async with pool.acquire() as conn:
        await conn.execute(_STORE, *columns)
    futures = [
        await producer.send(CDR, json.dumps(r).encode(), key=r["call_id"].encode()) for r in records
    ]
    await asyncio.gather(*futures)


# ---------------------------------------------------------------------------------------------
# billing and stats

PRICES = {"1": 0.01, "44": 0.02, "49": 0.03, "33": 0.025, "1800": 0.0, "4420": 0.015}
LONGEST = max(map(len, PRICES))


def price(callee: str | None, billsec: int) -> float:
    digits = "".join(ch for ch in (callee or "") if ch.isdigit())
    for n in range(min(LONGEST, len(digits)), 0, -1):
        rate = PRICES.get(digits[:n])
        if rate is not None:
            return round(rate * billsec / 60, 6)
    return 0.0


async def bill_batch(pool: asyncpg.Pool, values: list[bytes]) -> None:
    records = [json.loads(v) for v in values]
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO charges SELECT * FROM unnest($1::text[], $2::numeric[], $3::text[]) "
            "ON CONFLICT DO NOTHING",
            [r["call_id"] for r in records],
            [price(r["callee"], r["billsec"]) for r in records],
            ["EUR"] * len(records),
        )


async def count_batch(pool: asyncpg.Pool, values: list[bytes]) -> None:
    records = {r["call_id"]: r for r in map(json.loads, values)}
    async with pool.acquire() as conn, conn.transaction():
        new = await conn.fetch(
            "INSERT INTO seen SELECT unnest($1::text[]) ON CONFLICT DO NOTHING RETURNING call_id",
            list(records),
        )
        counts: dict[tuple[int, str], int] = {}
        for row in new:
            r = records[row["call_id"]]
            key = (int((r["ended_at"] or 0) // 360), r["hangup_cause"] or "")
            counts[key] = counts.get(key, 0) + 1
        if counts:
            await conn.execute(
                "INSERT INTO buckets SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[]) "
                "ON CONFLICT (bucket, hangup_cause) DO UPDATE "
                "SET calls = buckets.calls + excluded.calls",
                [k[0] for k in counts],
                [k[1] for k in counts],
                list(counts.values()),
            )


# ---------------------------------------------------------------------------------------------
# the consume loop: fetch (topped up for 20 ms), handle, commit


async def consume(group: str, topic: str, handle: Any) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    loop = asyncio.get_running_loop()
    try:
        while True:
            fetched = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            batch = [m for msgs in fetched.values() for m in msgs]
            deadline = loop.time() + GATHER_S
            while batch and len(batch) < BATCH and (left := deadline - loop.time()) > 0:
                more = await consumer.getmany(
                    timeout_ms=int(left * 1000) or 1, max_records=BATCH - len(batch)
                )
                if not more:
                    break
                batch += [m for msgs in more.values() for m in msgs]
            if not batch:
                continue
            await handle([m.value for m in batch])  # a CDR without a call id is dropped here
            offsets: dict[TopicPartition, int] = {}
            for m in batch:
                offsets[TopicPartition(m.topic, m.partition)] = m.offset + 1
            await consumer.commit(offsets)
            state.done += len(batch)
    finally:
        await consumer.stop()


# ---------------------------------------------------------------------------------------------
# the all-in-one: one process, a durable log on disk instead of Kafka, SQLite instead of PostgreSQL


class _Log:
    """An append-only file of length-prefixed documents: ``append`` returns once the document is
    written and fsync'd, every append waiting at that moment sharing one write and one fsync (in
    a worker thread, as cdrflow's journal does). Appended documents then queue for the sinks."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self.wake = asyncio.Event()
        self.queue: asyncio.Queue[list[bytes]] = asyncio.Queue()

    async def append(self, doc: bytes) -> None:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((doc, future))
        self.wake.set()
        await future

    def _write(self, frames: bytes) -> None:
        os.write(self.fd, frames)
        os.fsync(self.fd)

    async def writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.pending = self.pending, []
            if not batch:
                continue
            frames = b"".join(len(doc).to_bytes(4, "big") + doc for doc, _ in batch)
            await loop.run_in_executor(None, self._write, frames)
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
            self.queue.put_nowait([doc for doc, _ in batch])


SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS cdrs (
    call_id text PRIMARY KEY, caller text, callee text, direction text, hangup_cause text,
    started_at real, answered_at real, ended_at real, billsec integer, raw_lz4 blob);
CREATE TABLE IF NOT EXISTS charges (call_id text PRIMARY KEY, amount real, currency text);
CREATE TABLE IF NOT EXISTS buckets (
    bucket integer, hangup_cause text, calls integer, PRIMARY KEY (bucket, hangup_cause));
"""


def _sink(db: sqlite3.Connection, rows: list[tuple[dict[str, Any], bytes]]) -> None:
    """Store, price and count a batch in one transaction: a CDR already stored is neither
    charged nor counted again (idempotent on the call id)."""
    with db:
        new = []
        for record, raw in rows:
            cur = db.execute(
                "INSERT OR IGNORE INTO cdrs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*(record[c] for c in _COLUMNS), raw),
            )
            if cur.rowcount:
                new.append(record)
        db.executemany(
            "INSERT OR IGNORE INTO charges VALUES (?, ?, 'EUR')",
            [(r["call_id"], price(r["callee"], r["billsec"])) for r in new],
        )
        counts: dict[tuple[int, str], int] = {}
        for r in new:
            key = (int((r["ended_at"] or 0) // 360), r["hangup_cause"] or "")
            counts[key] = counts.get(key, 0) + 1
        db.executemany(
            "INSERT INTO buckets VALUES (?, ?, ?) ON CONFLICT (bucket, hangup_cause) "
            "DO UPDATE SET calls = calls + excluded.calls",
            [(*k, n) for k, n in counts.items()],
        )


async def allinone_sinks(log: _Log, db: sqlite3.Connection, offsets: str) -> None:
    """Batches of what the log holds (topped up for 20 ms): parsed and read in the event loop,
    stored in a worker thread (SQLite releases the GIL while it works), then the position
    appended to the offsets file (not fsync'd, as cdrflow's commits)."""
    loop = asyncio.get_running_loop()
    position = 0
    with open(offsets, "a") as out:  # noqa: ASYNC230  # once, at start
        while True:
            docs = await log.queue.get()
            deadline = loop.time() + GATHER_S
            while len(docs) < BATCH and (left := deadline - loop.time()) > 0:
                try:
                    async with asyncio.timeout(left):
                        docs += await log.queue.get()
                except TimeoutError:
                    break
            rows = [row for row in map(normalise, docs) if row[0]["call_id"]]
            await loop.run_in_executor(None, _sink, db, rows)
            position += len(docs)
            out.write(f"{position}\n")
            out.flush()
            state.done += len(docs)


# ---------------------------------------------------------------------------------------------
# the app


async def _topics() -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        with contextlib.suppress(Exception):  # already there
            await admin.create_topics(
                [NewTopic(t, PARTITIONS, 1) for t in (RAW, CDR)], timeout_ms=10_000
            )
    finally:
        await admin.close()


def _new_producer() -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        acks="all",
        compression_type="zstd",
        linger_ms=5,
        max_batch_size=512 * 1024,
        max_request_size=8 * 1024 * 1024 + 64 * 1024,
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if ROLE == "allinone":
        async with _allinone(app):
            yield
        return
    await _topics()
    pool = None
    if ROLE != "ingest":
        pool = await asyncpg.create_pool(DSN, min_size=1, max_size=2)
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock(1)")
            try:
                await conn.execute(DDL)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(1)")
    producer = _new_producer() if ROLE in ("ingest", "parser") else None
    if producer is not None:
        await producer.start()
    state.producer = producer
    task = None
    if ROLE == "parser":
        assert pool is not None
        assert producer is not None
        p, pr = pool, producer
        task = asyncio.create_task(consume("floor-parser", RAW, lambda v: parse_batch(p, pr, v)))
    elif ROLE == "billing":
        assert pool is not None
        p = pool
        task = asyncio.create_task(consume("floor-billing", CDR, lambda v: bill_batch(p, v)))
    elif ROLE == "stats":
        assert pool is not None
        p = pool
        task = asyncio.create_task(consume("floor-stats", CDR, lambda v: count_batch(p, v)))
    app.state.task = task
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if producer is not None:
            await producer.stop()
        if pool is not None:
            await pool.close()


@asynccontextmanager
async def _allinone(app: FastAPI) -> AsyncIterator[None]:
    os.makedirs(DIR, exist_ok=True)
    db = sqlite3.connect(os.path.join(DIR, "floor.sqlite3"), check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # cdrflow's all-in-one's settings
    db.executescript(SQLITE_DDL)
    log = _Log(os.path.join(DIR, "floor.log"))
    state.log = log
    writer = asyncio.create_task(log.writer())
    task = asyncio.create_task(allinone_sinks(log, db, os.path.join(DIR, "floor.offsets")))
    app.state.task = task
    try:
        yield
    finally:
        for t in (task, writer):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        db.close()
        os.close(log.fd)


app = FastAPI(lifespan=lifespan)
if ROLE in ("ingest", "allinone"):
    app.post("/v1/cdr")(post_cdr)

# The outcome counters the e2e harness reads, under cdrflow's names.
_COUNTERS = {
    "ingest": ['cdrflow_ingest_floor_total{outcome="accepted"}'],
    "parser": ['cdrflow_parser_cdrs_total{outcome="stored"}'],
    "billing": ['cdrflow_billing_charges_total{outcome="charged"}'],
    "stats": ['cdrflow_stats_cdrs_total{outcome="counted"}'],
}
_COUNTERS["allinone"] = [*_COUNTERS["parser"], *_COUNTERS["billing"], *_COUNTERS["stats"]]


@app.get("/readyz")
async def readyz() -> JSONResponse:
    task = app.state.task
    if task is not None and task.done():
        return JSONResponse({"status": "stopped", "error": repr(task.exception())}, 503)
    return JSONResponse({"status": "ready"})


@app.get("/metrics")
async def metrics() -> PlainTextResponse:
    done = state.acked if ROLE == "ingest" else state.done
    return PlainTextResponse("".join(f"{name} {done}\n" for name in _COUNTERS[ROLE]))

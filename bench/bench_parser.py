"""Parser: parse+map speed against bare ``lxml.etree.fromstring`` on the same documents, and CDRs/s
from ``cdr.raw`` (Tansu) to stored (PostgreSQL) against a raw PostgreSQL COPY of the same rows.

Targets: parse+map ≥ 50 % of bare lxml speed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime

import asyncpg
from lxml import etree
from sqlalchemy import func, select, text

from bench.common import ROOT, report, save
from cdr_ingest.documents import Document
from cdr_ingest.service import IngestService
from cdr_ingest.settings import IngestSettings
from cdr_parser.freeswitch import map_xml, parse_xml
from cdr_parser.models import cdrs
from cdr_parser.repository import CdrRepository
from cdr_parser.rows import cdr_row, raw_row
from cdrflow.mock import generate_cdr
from cdrflow.platform import create_service_app
from cdrkit.bus import Record, open_bus
from cdrkit.db import create_engine, session_factory
from cdrkit.testing.postgres import create_database, drop_database
from cdrkit.testing.tansu import TansuBroker
from cdrmodel import Origin, PayloadKind, topics

FIXTURES = ROOT / "tests" / "fixtures" / "freeswitch"
N_DOCS = 2000
N_PIPELINE = 20_000


def _docs() -> list[bytes]:
    rng = random.Random(3)
    docs = [generate_cdr(rng)[1].encode() for _ in range(N_DOCS)]
    docs += [p.read_bytes() for p in sorted(FIXTURES.glob("freeswitch_*cdr*.xml"))]
    return docs


def _interleaved_best(
    fns: dict[str, object], docs: list[bytes], rounds: int = 15
) -> dict[str, float]:
    """Docs/s of each function, best of ``rounds`` interleaved rounds: this machine's CPU is
    shared (steal time), and interleaving exposes every contender to the same noise."""
    best = dict.fromkeys(fns, 0.0)
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for d in docs:
                fn(d)  # type: ignore[operator]
            best[name] = max(best[name], len(docs) / (time.perf_counter() - t0))
    return best


def parse_map_ratio() -> dict[str, float]:
    docs = _docs()
    parser = etree.XMLParser()
    rates = _interleaved_best(
        {
            "bare": lambda d: etree.fromstring(d, parser),
            "safe": parse_xml,
            "full": lambda d: map_xml(parse_xml(d)),
        },
        docs,
    )
    size = sum(map(len, docs)) / len(docs)
    return {
        "doc_bytes_avg": size,
        "bare_lxml_per_s": rates["bare"],
        "safe_parse_per_s": rates["safe"],
        "parse_map_per_s": rates["full"],
        "parse_map_ratio": rates["full"] / rates["bare"],
    }


async def _pipeline(pg_url: str, broker: TansuBroker) -> dict[str, float]:
    rng = random.Random(5)
    bus = open_bus(broker.url)
    await bus.start()
    await bus.ensure_topics(topics.ALL)
    ingest = IngestService(IngestSettings(bus_url=broker.url), bus.producer)
    records, cdr_rows, raw_rows = [], [], []
    now = datetime.now(UTC)
    for _ in range(N_PIPELINE):
        call_id, xml = generate_cdr(rng)
        doc = Document(xml, PayloadKind.FREESWITCH_XML, "application/xml")
        env = ingest.envelope(doc, call_id, None, Origin())
        records.append(Record(env.to_json(), call_id.encode()))
        cdr_rows.append(cdr_row(map_xml(parse_xml(xml)), now))
        raw_rows.append(raw_row(env, call_id, now))
    for i in range(0, len(records), 2000):
        await bus.producer.send_many(topics.RAW, records[i : i + 2000])
    await bus.close()

    # cdr.raw → stored, timed from the moment the parser has joined its group (Tansu spends
    # a fixed 3 s forming a group; that is start-up, not throughput).
    app = create_service_app("parser", database_url=pg_url, bus_url=broker.url, batch_size=1000)
    engine = create_engine(pg_url)
    async with app.router.lifespan_context(app):
        t0 = time.perf_counter()
        while True:
            async with engine.connect() as conn:
                n = await conn.scalar(select(func.count()).select_from(cdrs)) or 0
            if n >= N_PIPELINE:
                break
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - t0

    # The storage step alone (idempotent insert of CDR + raw payload rows, batches of 1000)
    # against its physical limit: a raw COPY of the same rows into tables of the same shape.
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE cdrs, cdr_keys, raw_payloads"))
    repo = CdrRepository(session_factory(engine), "postgresql")
    t1 = time.perf_counter()
    for i in range(0, N_PIPELINE, 1000):
        await repo.store_batch(cdr_rows[i : i + 1000], raw_rows[i : i + 1000], [])
    store_elapsed = time.perf_counter() - t1
    await engine.dispose()

    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
    await conn.execute("CREATE TABLE copy_cdrs (LIKE cdrs INCLUDING ALL)")
    await conn.execute("CREATE TABLE copy_raw (LIKE raw_payloads INCLUDING ALL)")
    cdr_cols, raw_cols = list(cdr_rows[0]), list(raw_rows[0])
    cdr_copy = [
        tuple(json.dumps(r[c]) if c == "extra" else r[c] for c in cdr_cols) for r in cdr_rows
    ]
    raw_copy = [tuple(r[c] for c in raw_cols) for r in raw_rows]
    t2 = time.perf_counter()
    await conn.copy_records_to_table("copy_cdrs", records=cdr_copy, columns=cdr_cols)
    await conn.copy_records_to_table("copy_raw", records=raw_copy, columns=raw_cols)
    copy_elapsed = time.perf_counter() - t2
    await conn.close()
    return {
        "pipeline_per_s": N_PIPELINE / elapsed,
        "store_per_s": N_PIPELINE / store_elapsed,
        "copy_per_s": N_PIPELINE / copy_elapsed,
        "store_ratio_to_copy": copy_elapsed / store_elapsed,
        "pipeline_ratio_to_copy": copy_elapsed / elapsed,
    }


def main() -> dict[str, float]:
    figures = parse_map_ratio()
    pg_url = create_database("cdrflow_bench")
    try:
        with TansuBroker() as broker:
            figures.update(asyncio.run(_pipeline(pg_url, broker)))
    finally:
        drop_database(pg_url)
    report(
        "parser",
        [
            ("documents", f"{N_DOCS} mock + fixtures, {figures['doc_bytes_avg']:.0f} B average"),
            ("bare lxml.fromstring (limit)", f"{figures['bare_lxml_per_s']:9.0f} docs/s"),
            ("safe parse", f"{figures['safe_parse_per_s']:9.0f} docs/s"),
            (
                "parse + map",
                f"{figures['parse_map_per_s']:9.0f} docs/s  = "
                f"{figures['parse_map_ratio']:.0%} of bare lxml (target ≥ 50 %)",
            ),
            (
                f"cdr.raw → stored ({N_PIPELINE}, Tansu + PG)",
                f"{figures['pipeline_per_s']:9.0f} CDRs/s",
            ),
            ("storage step (idempotent insert)", f"{figures['store_per_s']:9.0f} CDRs/s"),
            ("raw PostgreSQL COPY (limit)", f"{figures['copy_per_s']:9.0f} CDRs/s"),
            ("storage step / COPY", f"{figures['store_ratio_to_copy']:.0%}"),
            ("whole pipeline / COPY", f"{figures['pipeline_ratio_to_copy']:.0%}"),
        ],
    )
    save("parser", figures)
    return figures


if __name__ == "__main__":
    main()

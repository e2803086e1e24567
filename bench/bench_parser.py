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
from sqlalchemy import func, select

from bench.common import ROOT, report, save
from cdr_ingest.documents import Document
from cdr_ingest.service import IngestService
from cdr_ingest.settings import IngestSettings
from cdr_parser.freeswitch import map_xml, parse_xml
from cdr_parser.models import cdrs
from cdr_parser.service import cdr_row
from cdrflow.mockfeed import generate_cdr
from cdrflow.platform import create_service_app
from cdrkit.bus import Record, open_bus
from cdrkit.db import create_engine
from cdrkit.testing.postgres import create_database, drop_database
from cdrkit.testing.tansu import TansuBroker
from cdrmodel import Origin, PayloadKind, topics

FIXTURES = ROOT.parent / "shared" / "fixtures" / "freeswitch"
N_DOCS = 2000
N_PIPELINE = 20_000


def _docs() -> list[bytes]:
    rng = random.Random(3)
    docs = [generate_cdr(rng)[1].encode() for _ in range(N_DOCS)]
    docs += [p.read_bytes() for p in sorted(FIXTURES.glob("*cdr*.xml"))]
    return docs


def _best_rate(fn: object, docs: list[bytes], rounds: int = 5) -> float:
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for d in docs:
            fn(d)  # type: ignore[operator]
        best = max(best, len(docs) / (time.perf_counter() - t0))
    return best


def parse_map_ratio() -> dict[str, float]:
    docs = _docs()
    parser = etree.XMLParser()
    bare = _best_rate(lambda d: etree.fromstring(d, parser), docs)
    safe = _best_rate(parse_xml, docs)
    full = _best_rate(lambda d: map_xml(parse_xml(d)), docs)
    size = sum(map(len, docs)) / len(docs)
    return {
        "doc_bytes_avg": size,
        "bare_lxml_per_s": bare,
        "safe_parse_per_s": safe,
        "parse_map_per_s": full,
        "parse_map_ratio": full / bare,
    }


async def _pipeline(pg_url: str, broker: TansuBroker) -> dict[str, float]:
    rng = random.Random(5)
    bus = open_bus(broker.url)
    await bus.start()
    await bus.ensure_topics(topics.ALL)
    ingest = IngestService(IngestSettings(bus_url=broker.url), bus.producer)
    records, rows = [], []
    now = datetime.now(UTC)
    for _ in range(N_PIPELINE):
        call_id, xml = generate_cdr(rng)
        env = ingest.envelope(
            Document(xml, PayloadKind.FREESWITCH_XML, "application/xml", call_id),
            call_id,
            True,
            Origin(),
        )
        records.append(Record(env.to_json(), call_id.encode()))
        rows.append(cdr_row(map_xml(parse_xml(xml)), now))
    for i in range(0, len(records), 2000):
        await bus.producer.send_many(topics.RAW, records[i : i + 2000])
    await bus.close()

    app = create_service_app("parser", database_url=pg_url, bus_url=broker.url, batch_size=1000)
    engine = create_engine(pg_url)
    t0 = time.perf_counter()
    async with app.router.lifespan_context(app):
        while True:
            async with engine.connect() as conn:
                n = await conn.scalar(select(func.count()).select_from(cdrs)) or 0
            if n >= N_PIPELINE:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
    await engine.dispose()

    # The physical limit: the same rows COPYed into a table of the same shape.
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
    await conn.execute("CREATE TABLE copy_limit (LIKE cdrs INCLUDING ALL)")
    cols = list(rows[0].keys())
    records_copy = [tuple(json.dumps(r[c]) if c == "extra" else r[c] for c in cols) for r in rows]
    t1 = time.perf_counter()
    await conn.copy_records_to_table("copy_limit", records=records_copy, columns=cols)
    copy_elapsed = time.perf_counter() - t1
    await conn.close()
    return {
        "pipeline_per_s": N_PIPELINE / elapsed,
        "copy_per_s": N_PIPELINE / copy_elapsed,
        "pipeline_ratio_to_copy": (N_PIPELINE / elapsed) / (N_PIPELINE / copy_elapsed),
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
            ("raw PostgreSQL COPY (limit)", f"{figures['copy_per_s']:9.0f} rows/s"),
            ("pipeline / COPY", f"{figures['pipeline_ratio_to_copy']:.0%}"),
        ],
    )
    save("parser", figures)
    return figures


if __name__ == "__main__":
    main()

"""Large CDRs: a 5 MB FreeSWITCH CDR from POST to stored, with the claim check on.

Ingest and parser run as real ``cdrflow serve`` processes on a Tansu broker and PostgreSQL, with
the local file object store. Each of ``POSTS`` CDRs (a real fixture inflated to 5 MB, each with
its own call id) is posted as raw XML and timed until its row is in PostgreSQL, one at a time.
Also: ingest's resident memory idle and at its peak (``VmHWM``), and the physical limit measured
in the same run — a bare lxml parse of the same document plus writing it once to PostgreSQL with
COPY — against which the latency is a ratio. Target: a 5 MB CDR stored in < 1 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from lxml import etree

from bench.common import ROOT, free_port, python, report, save, server
from cdrkit.testing.postgres import create_database, drop_database
from cdrkit.testing.tansu import TansuBroker

FIXTURE = (
    ROOT
    / "tests"
    / "fixtures"
    / "freeswitch"
    / "freeswitch_xml_cdr_tinycdr_2009_originator_cancel.cdr.xml"
)
FIXTURE_CALL = b"91353230-461f-11de-aa7f-b10b4edc0c92"
LARGE_BYTES = 5_000_000
POSTS = 10
_PAD = "%7B%22leg%22%3A%22a%22%2C%22codec%22%3A%22PCMU%22%2C%22ts%22%3A1242316950%7D"


def inflate_cdr(xml: bytes, size: int = LARGE_BYTES) -> bytes:
    """A real FreeSWITCH CDR grown to ``size`` bytes the way long calls and complex dialplans grow
    them: many more channel variables and a long ``app_log``. Still a valid, mappable CDR: the
    added variables have names of their own and the original last application stays last."""
    head, sep, tail = xml.partition(b"<variables>")
    if not sep or b"<app_log>" not in tail:
        raise ValueError("inflate_cdr needs a CDR with <variables> and <app_log>")
    budget = size - len(xml)
    variables, apps = bytearray(), bytearray()
    i = 0
    while len(variables) + len(apps) < budget:
        variables += f"\n    <cdrflow_pad_{i:06d}>{_PAD}</cdrflow_pad_{i:06d}>".encode()
        apps += f'\n    <application app_name="set" app_data="cdrflow_pad_{i:06d}={i}"/>'.encode()
        i += 1
    vars_end, app_sep, app_tail = tail.partition(b"<app_log>")
    return head + sep + bytes(variables) + vars_end + app_sep + bytes(apps) + app_tail


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


async def _stored(conn: asyncpg.Connection, call_id: str, timeout_s: float = 30) -> float:
    deadline = time.perf_counter() + timeout_s
    while await conn.fetchval("SELECT 1 FROM cdrs WHERE call_id = $1", call_id) is None:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"CDR {call_id} not stored within {timeout_s} s")
        await asyncio.sleep(0.002)
    return time.perf_counter()


async def _post_and_wait(port: int, dsn: str, docs: list[tuple[str, bytes]]) -> list[float]:
    """Seconds from the start of each POST until its row is in PostgreSQL, one CDR at a time."""
    latencies = []
    conn = await asyncpg.connect(dsn)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for call_id, body in docs:
            t0 = time.perf_counter()
            resp = await client.post(
                "/v1/cdr",
                params={"uuid": f"a_{call_id}"},
                content=body,
                headers={"content-type": "text/xml"},
            )
            resp.raise_for_status()
            latencies.append(await _stored(conn, call_id) - t0)
    await conn.close()
    return latencies


async def _limit(dsn: str, doc: bytes, rounds: int = 5) -> dict[str, float]:
    """The physical floor of the same work: parse the document once, write it once."""
    parser = etree.XMLParser(huge_tree=True)
    parse = min(_timed(lambda: etree.fromstring(doc, parser)) for _ in range(rounds))
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TEMP TABLE bench_copy (call_id text, payload text)")
    text = doc.decode()
    copies = []
    for i in range(rounds):
        t0 = time.perf_counter()
        await conn.copy_records_to_table("bench_copy", records=[(str(i), text)])
        copies.append(time.perf_counter() - t0)
    await conn.close()
    return {"lxml_parse_s": parse, "pg_copy_s": min(copies), "limit_s": parse + min(copies)}


def _timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> dict[str, float]:
    base = inflate_cdr(FIXTURE.read_bytes())
    docs = []
    for _ in range(POSTS + 1):  # the first one warms up (group join, imports, connections)
        call_id = str(uuid.uuid4())
        docs.append((call_id, base.replace(FIXTURE_CALL, call_id.encode())))
    db_url = create_database("cdrflow_bench")
    dsn = db_url.replace("postgresql+asyncpg", "postgresql")
    try:
        with tempfile.TemporaryDirectory() as tmp, TansuBroker() as broker:
            env = {
                "CDRFLOW_BUS_URL": broker.url,
                "CDRFLOW_DATABASE_URL": db_url,
                "CDRFLOW_DATA_DIR": tmp,
                "CDRFLOW_OBJECT_STORE_URL": (Path(tmp) / "objects").as_uri(),
                "CDRFLOW_LOG_LEVEL": "WARNING",
            }
            serve = [python(), "-m", "cdrflow", "serve"]
            iport, pport = free_port(), free_port()
            with (
                server([*serve, "parser", "--port", str(pport)], pport, env),
                server([*serve, "ingest", "--port", str(iport)], iport, env) as ingest,
            ):
                idle_kib = _status_kib(ingest.pid, "VmRSS")
                asyncio.run(_post_and_wait(iport, dsn, docs[:1]))
                latencies = asyncio.run(_post_and_wait(iport, dsn, docs[1:]))
                peak_kib = _status_kib(ingest.pid, "VmHWM")
                objects = sum(1 for p in (Path(tmp) / "objects").rglob("*") if p.is_file())
            limit = asyncio.run(_limit(dsn, base))
    finally:
        with contextlib.suppress(Exception):
            drop_database(db_url)

    p50 = statistics.median(latencies)
    figures = {
        "doc_bytes": float(len(base)),
        "posts": float(len(latencies)),
        "p50_s": p50,
        "max_s": max(latencies),
        "ingest_idle_rss_mib": idle_kib / 1024,
        "ingest_peak_rss_mib": peak_kib / 1024,
        "ingest_peak_over_idle_mib": (peak_kib - idle_kib) / 1024,
        "claim_check_objects": float(objects),
        **limit,
        "ratio_limit_to_p50": limit["limit_s"] / p50,
        "target_met": float(max(latencies) < 1.0),
    }
    report(
        f"large CDRs: {len(base) / 1e6:.1f} MB FreeSWITCH XML, POST → stored, "
        f"{len(latencies)} posts, Tansu + PostgreSQL, local object store",
        [
            (
                "post → stored",
                f"p50 {p50 * 1000:.0f} ms  max {max(latencies) * 1000:.0f} ms  "
                f"(target < 1000 ms: {'met' if max(latencies) < 1.0 else 'NOT met'})",
            ),
            (
                "physical limit",
                f"{limit['limit_s'] * 1000:.0f} ms = bare lxml parse "
                f"{limit['lxml_parse_s'] * 1000:.0f} ms + PostgreSQL COPY "
                f"{limit['pg_copy_s'] * 1000:.0f} ms  → p50 is {p50 / limit['limit_s']:.1f} x "
                f"the limit ({figures['ratio_limit_to_p50']:.0%})",
            ),
            (
                "ingest RSS",
                f"idle {figures['ingest_idle_rss_mib']:.0f} MiB, peak "
                f"{figures['ingest_peak_rss_mib']:.0f} MiB "
                f"(+{figures['ingest_peak_over_idle_mib']:.0f} MiB for one 5 MB post at a time)",
            ),
            ("claim-check objects written", f"{objects}"),
        ],
    )
    save("large", figures)
    return figures


if __name__ == "__main__":
    main()

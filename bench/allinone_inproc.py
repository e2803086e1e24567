"""The all-in-one in process: the app ``cdrflow run`` builds (``create_allinone_app`` with
``embedded_overrides``: the durable bus log in a temporary data dir, SQLite, the parse in a
thread, ``gc.freeze``), its ASGI callable driven directly (no HTTP server, no wrk), ``CONCURRENCY``
posts at a time of the e2e bench's url-encoded FreeSWITCH fixtures with fresh uuids, then waiting
until the parser stored, billing charged and stats counted every one. Prints the CPU per CDR of
the event loop's thread (which holds the GIL for all the Python: what bounds one process) and of
the whole process, and the wall time per CDR (docs/performance.md, ninth round, h9allinone).

    python -m bench.allinone_inproc [POSTS]          # default 3,000 after 400 to warm up

Under ``valgrind --tool=callgrind --separate-threads=yes`` (``ALLINONE_FIXED=1``: uuids from a
counter) the loop's thread is callgrind's thread 1. Not part of ``make bench``: a tool to compare
two checkouts in alternating runs.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import uvloop

from bench.ingest_asgi import post

CONCURRENCY = int(os.environ.get("ALLINONE_CONCURRENCY", "16"))
WARM = int(os.environ.get("ALLINONE_WARM", "400"))
FIXED = os.environ.get("ALLINONE_FIXED") == "1"


def _posts(n: int, offset: int) -> list[tuple[bytes, bytes]]:
    from bench.bench_e2e import templates

    forms = templates()
    out = []
    for i in range(offset, offset + n):
        body, count = forms[i % len(forms)]
        ids = [
            str(uuid.UUID(int=(i << 16) + j)) if FIXED else str(uuid.uuid4()) for j in range(count)
        ]
        for j, u in enumerate(ids):
            body = body.replace(f"@@U{j}@@", u)
        out.append((f"uuid={ids[0]}".encode(), body.encode()))
    return out


def _done() -> float:
    from prometheus_client import REGISTRY

    def value(name: str, outcome: str) -> float:
        return REGISTRY.get_sample_value(name, {"outcome": outcome}) or 0.0

    charged = sum(
        value("cdrflow_billing_charges_total", o) for o in ("priced", "not_answered", "unpriced")
    )
    return min(
        value("cdrflow_parser_cdrs_total", "stored")
        + value("cdrflow_parser_cdrs_total", "dead_letter"),
        charged,
        value("cdrflow_stats_cdrs_total", "counted") + value("cdrflow_stats_cdrs_total", "expired"),
    )


async def _run(posts: int) -> dict[str, float]:
    from cdrflow.platform import create_allinone_app, embedded_overrides

    app = create_allinone_app(**embedded_overrides())
    warm, measured = _posts(WARM, 0), _posts(posts, WARM)
    statuses: list[int] = []
    async with app.router.lifespan_context(app):
        gc.collect()
        gc.freeze()

        async def run(batch: list[tuple[bytes, bytes]]) -> None:
            queue = list(reversed(batch))

            async def worker() -> None:
                while queue:
                    statuses.append(await post(app, app, *queue.pop()))

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            target = len(statuses)
            while _done() < target:  # noqa: ASYNC110  # polling the stages' counters
                await asyncio.sleep(0.002)

        await run(warm)
        cpu, proc, wall = time.thread_time(), time.process_time(), time.perf_counter()
        await run(measured)
        cpu, proc = time.thread_time() - cpu, time.process_time() - proc
        wall = time.perf_counter() - wall
    return {
        "loop_us": cpu / posts * 1e6,
        "process_us": proc / posts * 1e6,
        "wall_us": wall / posts * 1e6,
        "not_200": float(sum(s != 200 for s in statuses)),
    }


def main(argv: list[str]) -> dict[str, float]:
    posts = int(argv[0]) if argv else 3000
    data = Path(tempfile.mkdtemp(prefix="cdrflow-allinone-"))
    os.environ["CDRFLOW_DATA_DIR"] = str(data)
    os.environ.setdefault("CDRFLOW_LOG_LEVEL", "WARNING")
    for name in ("CDRFLOW_DATABASE_URL", "CDRFLOW_BUS_URL"):
        os.environ.pop(name, None)
    try:
        figures = uvloop.run(_run(posts))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    print(
        f"all-in-one in process ({posts} posts, {CONCURRENCY} at a time): loop thread "
        f"{figures['loop_us']:.0f} µs CPU/CDR, process {figures['process_us']:.0f}, wall "
        f"{figures['wall_us']:.0f} µs/CDR, {figures['not_200']:.0f} not 200"
    )
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])

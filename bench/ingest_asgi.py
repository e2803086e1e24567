"""Ingest's CPU per post in process: the app's ASGI callable driven directly (no HTTP server),
``CONCURRENCY`` posts at a time of the 10 KB generated CDRs of ``python -m bench ingest`` (fresh
uuids), on uvloop, CPU by ``time.thread_time`` (docs/performance.md, fourth round, h4ingest).

    python -m bench.ingest_asgi                  # memory bus, 3,000 posts
    ASGI_BENCH_BUS=tansu python -m bench.ingest_asgi
    ASGI_BENCH_POSTS=6000 ASGI_BENCH_LAYER=RequestMetrics python -m bench.ingest_asgi

``ASGI_BENCH_LAYER`` enters the built middleware stack at that class instead of at the app (what
the outer layers cost). Not part of ``make bench``: a tool to split ingest's CPU, compared in
alternating runs of two checkouts (one-off figures on a shared machine are noise).
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import uvloop

from cdrflow.mock import generate_cdr

POSTS = int(os.environ.get("ASGI_BENCH_POSTS", "3000"))
CONCURRENCY = int(os.environ.get("ASGI_BENCH_CONCURRENCY", "16"))
WARM = 200


def _posts(n: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(1)
    bases = []
    for _ in range(200):
        call_id, xml = generate_cdr(rng, size_bytes=10_000)
        bases.append((call_id, "<originator>" in xml, "cdr=" + quote(xml, safe="")))
    out = []
    for i in range(n):
        call_id, b_leg, body = bases[i % len(bases)]
        fresh = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        param = fresh if b_leg else f"a_{fresh}"
        out.append((f"uuid={param}".encode(), body.replace(call_id, fresh).encode()))
    return out


async def post(app: Any, root: Any, query: bytes, body: bytes) -> int:
    """One url-encoded ``POST /v1/cdr`` through ``app`` (``root``: the scope's app); its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/cdr",
        "raw_path": b"/v1/cdr",
        "query_string": query,
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
        "app": root,
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _run(bus_url: str) -> dict[str, float]:
    from cdr_ingest.app import create_app
    from cdr_ingest.settings import IngestSettings
    from cdrkit.settings import load

    settings = load(IngestSettings, data_dir=Path(tempfile.mkdtemp()), bus_url=bus_url)
    root = create_app(settings)
    posts = _posts(POSTS + WARM)
    statuses: list[int] = []
    async with root.router.lifespan_context(root):
        app: Any = root
        layer = os.environ.get("ASGI_BENCH_LAYER")
        if layer:
            await post(root, root, *posts[0])  # builds the middleware stack
            app = root.middleware_stack
            while type(app).__name__ != layer:
                app = app.app

        async def run(batch: list[tuple[bytes, bytes]]) -> None:
            queue = list(batch)

            async def worker() -> None:
                while queue:
                    statuses.append(await post(app, root, *queue.pop()))

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

        await run(posts[:WARM])
        statuses.clear()
        cpu, wall = time.thread_time(), time.perf_counter()
        await run(posts[WARM:])
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    return {
        "cpu_us_per_post": cpu / POSTS * 1e6,
        "wall_us_per_post": wall / POSTS * 1e6,
        "not_200": float(sum(s != 200 for s in statuses)),
    }


def main() -> dict[str, float]:
    bus = os.environ.get("ASGI_BENCH_BUS", "memory")
    if bus == "tansu":
        from cdrkit.testing.tansu import TansuBroker

        with TansuBroker() as broker:
            figures = uvloop.run(_run(broker.url))
    else:
        figures = uvloop.run(_run(f"memory://{uuid.uuid4().hex}"))
    print(
        f"ingest in process ({bus} bus, {POSTS} posts, {CONCURRENCY} at a time): "
        f"{figures['cpu_us_per_post']:.0f} µs CPU/post, {figures['wall_us_per_post']:.0f} µs "
        f"wall/post, {figures['not_200']:.0f} not 200"
    )
    return figures


if __name__ == "__main__":
    main()

"""Pexip: participants/s pulled (HTTPS paging through meta.next, CSV files) and mapped to CDRs,
against a fake Management Node in another process; the limit is bare ``json.loads`` of the same
page bodies in the same run (what any client must at least do with them).

``BENCH_PEXIP_PARTICIPANTS`` (default 50,000) and ``BENCH_PEXIP_PAGE`` (default 500) set the size.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import multiprocessing
import os
import ssl
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import report, save
from cdr_ingest.pexip.puller import Puller
from cdr_ingest.pexip.records import RecordType
from cdr_ingest.pexip.settings import PexipSettings
from cdr_parser.pexip import map_participant
from tests.pexip.fakenode import Certs, FakeNode, NodeServer, make_certs, make_history

N = int(os.environ.get("BENCH_PEXIP_PARTICIPANTS", "50000"))
PAGE = int(os.environ.get("BENCH_PEXIP_PAGE", "500"))


def _serve(certs: Certs, n: int, port_q: Any, stop: Any) -> None:
    node = FakeNode(delay_s=0.0)
    node.conferences, node.participants = make_history(n)
    with NodeServer(node, certs):
        port_q.put(node.url)
        stop.wait()


def _pages(url: str, certs: Certs) -> list[bytes]:
    """The participant pages' raw bodies, fetched once (for the bare-decoding limit)."""
    ctx = ssl.create_default_context(cafile=str(certs.ca_file))
    auth = "Basic " + base64.b64encode(b"admin:s3cret").decode()
    bodies: list[bytes] = []
    path: str | None = f"/api/admin/history/v1/participant/?limit={PAGE}&offset=0"
    while path:
        req = urllib.request.Request(url + path, headers={"Authorization": auth})
        with urllib.request.urlopen(req, context=ctx) as resp:
            body = resp.read()
        bodies.append(body)
        path = json.loads(body)["meta"]["next"]
    return bodies


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certs(Path(tmp) / "tls")
        ctx = multiprocessing.get_context("spawn")
        port_q, stop = ctx.Queue(), ctx.Event()
        proc = ctx.Process(target=_serve, args=(certs, N, port_q, stop), daemon=True)
        proc.start()
        try:
            url = port_q.get(timeout=120)
            bodies = _pages(url, certs)
            settings = PexipSettings(
                url=url,
                password="s3cret",
                ca_file=certs.ca_file,
                data_dir=Path(tmp) / "data",
                page_size=PAGE,
            )
            figures = _measure(settings, bodies)
        finally:
            stop.set()
            proc.join(10)
    rows = [
        ("participants", f"{N:,} in pages of {PAGE} (measured on a loaded machine)"),
        ("bare json.loads of the pages", f"{figures['bare_per_s']:,.0f} participants/s (limit)"),
        ("pull (HTTPS + CSV files)", f"{figures['pull_per_s']:,.0f} participants/s"),
        ("pull, per puller CPU second", f"{figures['pull_per_cpu_s']:,.0f} participants/s"),
        ("map to CDR", f"{figures['map_per_s']:,.0f} participants/s"),
        ("pull + map", f"{figures['pull_map_per_s']:,.0f} participants/s"),
        ("pull + map / bare decoding", f"{figures['ratio']:.1%}"),
    ]
    report("pexip: pull + map against a fake Management Node", rows)
    save("pexip", {"participants": N, "page": PAGE, **figures})


def _best(fn: Any, rounds: int) -> float:
    """The shortest of ``rounds`` runs, seconds: this machine's CPU is shared (steal time)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _measure(settings: PexipSettings, bodies: list[bytes]) -> dict[str, float]:
    objects = [o for b in bodies for o in json.loads(b)["objects"]]
    assert len(objects) == N, len(objects)
    bare = _best(lambda: [json.loads(b) for b in bodies], 5)

    cpu: list[float] = []

    def pull() -> None:
        since = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        c0 = time.process_time()
        result = asyncio.run(Puller(settings).pull(since))
        cpu.append(time.process_time() - c0)
        assert result.records[RecordType.PARTICIPANT] == N

    # The same window twice: the second pull's aggregates gain nothing but do the same work.
    pulled = _best(pull, 2)
    texts = [json.dumps(o) for o in objects]  # the envelope payloads the parser maps
    mapped = _best(lambda: [map_participant(t) for t in texts], 3)
    return {
        "bare_per_s": N / bare,
        "pull_per_s": N / pulled,
        # the puller's own CPU (the rest of its wall time waits on the node: TLS, JSON encoding)
        "pull_per_cpu_s": N / min(cpu),
        "map_per_s": N / mapped,
        "pull_map_per_s": N / (pulled + mapped),
        "ratio": bare / (pulled + mapped),
    }


if __name__ == "__main__":
    main()

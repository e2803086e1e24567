"""Ingest: requests/s and p99 for 10 KB FreeSWITCH CDRs (url-encoded form, the FusionPBX default),
against a bare FastAPI endpoint reading the same body in the same run.

Each server is one uvicorn process; the load generator runs in this process on the other core.
Ingest publishes to a Tansu broker (acks=all) and answers only after the acknowledgement.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from urllib.parse import quote

from bench.common import bare_and_ingest, cpu_seconds, report, save, server
from bench.loadgen import build_request, run_load
from cdrflow.mock import generate_cdr

SECONDS = 8.0
CONNECTIONS = 16


# Every post must be a new call: a repeated one is answered from ingest's duplicate window
# without publishing, which is not what a switch's load costs. 200 generated documents, each
# sent under POOL // 200 fresh uuids; the run reports how many posts had to repeat one.
POOL = 30_000


def _requests(n: int = POOL, distinct: int = 200) -> list[bytes]:
    rng = random.Random(1)
    bases = []
    for _ in range(distinct):
        call_id, xml = generate_cdr(rng, size_bytes=10_000)
        # uuids are hex and '-': url-encoding leaves them as they are
        bases.append((call_id, "<originator>" in xml, "cdr=" + quote(xml, safe="")))
    reqs = []
    for i in range(n):
        call_id, b_leg, body = bases[i % distinct]
        fresh = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        param = fresh if b_leg else f"a_{fresh}"
        reqs.append(
            build_request(
                f"/v1/cdr?uuid={param}",
                body.replace(call_id, fresh).encode(),
                "application/x-www-form-urlencoded",
            )
        )
    return reqs


def _measure(
    args: list[str], port: int, reqs: list[bytes], env: dict[str, str]
) -> dict[str, float]:
    with server(args, port, env) as proc:
        warm, reqs = reqs[-20:], reqs[:-20]  # the warm-up's calls are never sent again
        asyncio.run(run_load("127.0.0.1", port, warm, seconds=1.0, connections=4))
        cpu0 = cpu_seconds(proc.pid)
        res = asyncio.run(
            run_load("127.0.0.1", port, reqs, seconds=SECONDS, connections=CONNECTIONS)
        )
        cpu = cpu_seconds(proc.pid) - cpu0
    return {
        "cpu_us_per_req": cpu / max(res.requests, 1) * 1e6,
        "rps": res.rps,
        "p50_ms": res.pct(50),
        "p99_ms": res.pct(99),
        "errors": res.errors,
        "requests": res.requests,
        "repeated_posts": max(res.requests - len(reqs), 0),
    }


def main() -> dict[str, float]:
    reqs = _requests()
    bare, results = bare_and_ingest(lambda args, port, env: _measure(args, port, reqs, env))
    figures: dict[str, float] = {f"bare_{k}": v for k, v in bare.items()}
    for label, res in results.items():
        figures.update({f"{label}_{k}": v for k, v in res.items()})
        figures[f"{label}_ratio_to_bare"] = res["rps"] / bare["rps"]
        figures[f"{label}_cpu_ratio_to_bare"] = bare["cpu_us_per_req"] / res["cpu_us_per_req"]

    report(
        "ingest: POST /v1/cdr, 10 KB url-encoded CDRs, "
        f"{CONNECTIONS} connections, {SECONDS:.0f} s, 1 uvicorn process",
        [
            (
                "bare FastAPI (limit)",
                f"{bare['rps']:8.0f} req/s  p50 {bare['p50_ms']:.2f} ms  "
                f"p99 {bare['p99_ms']:.2f} ms  server CPU {bare['cpu_us_per_req']:.0f} µs/req",
            ),
            *[
                (
                    f"ingest → {lbl} bus",
                    f"{figures[lbl + '_rps']:8.0f} req/s  "
                    f"p50 {figures[lbl + '_p50_ms']:.2f} ms  "
                    f"p99 {figures[lbl + '_p99_ms']:.2f} ms  "
                    f"server CPU {figures[lbl + '_cpu_us_per_req']:.0f} µs/req  "
                    f"= {figures[lbl + '_ratio_to_bare']:.0%} of bare req/s, "
                    f"{figures[lbl + '_cpu_ratio_to_bare']:.0%} of its CPU efficiency "
                    f"(errors {figures[lbl + '_errors']:.0f}, posts repeating an earlier "
                    f"call {figures[lbl + '_repeated_posts']:.0f})",
                )
                for lbl in ("kafka", "memory")
            ],
        ],
    )
    save("ingest", figures)
    return figures


if __name__ == "__main__":
    main()

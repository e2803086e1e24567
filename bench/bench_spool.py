"""Ingest with its spool: sustained rate and p50/p99 for 10 KB CDRs with the spool idle (the bus
acknowledges every post) and with the spool active (the bus is down: every post is fsync'd to the
spool), each against a bare FastAPI endpoint reading the same body in the same run; then the rate
at which the drainer ships the spool once the broker is back.

Each server is one uvicorn process; the load generator runs in this process. The spool lives in a
temporary directory (the disk its fsyncs hit is this machine's).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bench_ingest import _requests
from bench.common import cpu_seconds, free_port, python, report, save, server
from bench.loadgen import run_load
from cdrkit.testing.tansu import TansuBroker

SECONDS = 5.0
CONNECTIONS = 16
UVICORN = [python(), "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]


def _load(port: int, reqs: list[bytes], pid: int) -> dict[str, float]:
    asyncio.run(run_load("127.0.0.1", port, reqs[:20], seconds=1.0, connections=4))  # warm-up
    cpu0 = cpu_seconds(pid)
    res = asyncio.run(run_load("127.0.0.1", port, reqs, seconds=SECONDS, connections=CONNECTIONS))
    cpu = cpu_seconds(pid) - cpu0
    return {
        "rps": res.rps,
        "p50_ms": res.pct(50),
        "p99_ms": res.pct(99),
        "cpu_us_per_req": cpu / max(res.requests, 1) * 1e6,
        "errors": res.errors,
        "requests": res.requests,
    }


def _spool(port: int) -> dict[str, Any]:
    status: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/v1/spool", timeout=10).json()
    return status


def _ingest(port: int, bus_url: str, data_dir: Path) -> tuple[list[str], dict[str, str]]:
    args = [python(), "-m", "cdrflow", "serve", "ingest", "--port", str(port)]
    env = {
        "CDRFLOW_BUS_URL": bus_url,
        "CDRFLOW_DATA_DIR": str(data_dir),
        "CDRFLOW_LOG_LEVEL": "WARNING",
        "INGEST_SPOOL_AFTER_S": "1",
    }
    return args, env


def main() -> dict[str, float]:
    reqs = _requests()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="cdrflow-bench-spool-") as tmp:
        work = Path(tmp)
        port = free_port()
        with server([*UVICORN, "bench.bare_app:app", "--port", str(port)], port) as proc:
            bare = _load(port, reqs, proc.pid)
        figures.update({f"bare_{k}": v for k, v in bare.items()})

        with TansuBroker() as broker:
            port = free_port()
            args, env = _ingest(port, broker.url, work / "idle")
            with server(args, port, env, log=work / "idle.log") as proc:
                idle = _load(port, reqs, proc.pid)
                idle["spooled_at_end"] = _spool(port)["depth"]
        figures.update({f"idle_{k}": v for k, v in idle.items()})

        # The bus is down: a port with nothing on it, where a broker starts afterwards.
        broker_port = free_port()
        port = free_port()
        args, env = _ingest(port, f"kafka://127.0.0.1:{broker_port}?idempotence=false", work / "a")
        with server(args, port, env, log=work / "active.log") as proc:
            active = _load(port, reqs, proc.pid)
            spooled = _spool(port)
            active["spooled"] = spooled["depth"]
            active["spool_bytes"] = spooled["bytes"]
            with TansuBroker(port=broker_port):
                back = time.perf_counter()
                first: float | None = None
                depth = spooled["depth"]
                deadline = back + 120
                while depth and time.perf_counter() < deadline:
                    time.sleep(0.05)
                    depth = _spool(port)["depth"]
                    if first is None and depth < spooled["depth"]:
                        first = time.perf_counter()
                done = time.perf_counter()
            active["drain_left"] = depth
            active["drain_s"] = done - (first or back)
            active["drain_start_s"] = (first or done) - back
            active["drain_rps"] = (spooled["depth"] - depth) / max(done - (first or back), 1e-9)
        figures.update({f"active_{k}": v for k, v in active.items()})

    for label in ("idle", "active"):
        figures[f"{label}_ratio_to_bare"] = figures[f"{label}_rps"] / bare["rps"]
    figures["drain_ratio_to_bare"] = figures["active_drain_rps"] / bare["rps"]

    def row(label: str) -> str:
        f = {k.removeprefix(label + "_"): v for k, v in figures.items()}
        return (
            f"{f['rps']:8.0f} req/s  p50 {f['p50_ms']:.2f} ms  p99 {f['p99_ms']:.2f} ms  "
            f"server CPU {f['cpu_us_per_req']:.0f} µs/req  = {f['ratio_to_bare']:.0%} of bare "
            f"req/s (errors {f['errors']:.0f})"
        )

    report(
        "ingest spool: POST /v1/cdr, 10 KB url-encoded CDRs, "
        f"{CONNECTIONS} connections, {SECONDS:.0f} s, 1 uvicorn process",
        [
            (
                "bare FastAPI (limit)",
                f"{bare['rps']:8.0f} req/s  p50 {bare['p50_ms']:.2f} ms  "
                f"p99 {bare['p99_ms']:.2f} ms  server CPU {bare['cpu_us_per_req']:.0f} µs/req",
            ),
            ("spool idle (bus up)", row("idle")),
            ("spool active (bus down)", row("active")),
            (
                "drain once the bus is back",
                f"{figures['active_drain_rps']:8.0f} CDRs/s  ({figures['active_spooled']:.0f} "
                f"CDRs, {figures['active_spool_bytes'] / 1e6:.1f} MB in "
                f"{figures['active_drain_s']:.2f} s after a "
                f"{figures['active_drain_start_s']:.2f} s reconnect; "
                f"{figures['drain_ratio_to_bare']:.0%} of bare req/s; "
                f"{figures['active_drain_left']:.0f} left)",
            ),
        ],
    )
    save("spool", figures)
    return figures


if __name__ == "__main__":
    main()

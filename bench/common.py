"""Shared bench plumbing: servers in subprocesses, a scratch database, a broker, result output."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / ".bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(
    args: list[str], port: int, env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process until the block ends; wait for /healthz or the port first.

    ``log``: a file for the server's stderr (else a pipe read only if it exits early, so a
    server that logs a lot while running should be given one)."""
    log_file = log.open("ab") if log is not None else None
    proc = subprocess.Popen(
        args,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log_file if log_file is not None else subprocess.PIPE,
    )
    if log_file is not None:
        log_file.close()
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                raise RuntimeError(f"{args[0]} exited early: {err}")
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                if r.status_code in (200, 404):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args} did not become ready")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (from /proc), to compare cost per request."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def python() -> str:
    return sys.executable


def save(name: str, figures: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str))


def report(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n== {title}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


Measure = Callable[[list[str], int, dict[str, str]], dict[str, float]]


def bare_and_ingest(measure: Measure) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """``measure`` (server args, port, env) run against the bare FastAPI endpoint (the limit),
    then against ``cdrflow serve ingest`` on a Tansu broker and on the memory bus."""
    from cdrkit.testing.tansu import TansuBroker

    uvicorn = [python(), "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
    port = free_port()
    bare = measure([*uvicorn, "bench.bare_app:app", "--port", str(port)], port, {})
    results: dict[str, dict[str, float]] = {}
    with TansuBroker() as broker:
        for label, bus_url in [("kafka", broker.url), ("memory", "memory://")]:
            port = free_port()
            results[label] = measure(
                [python(), "-m", "cdrflow", "serve", "ingest", "--port", str(port)],
                port,
                {"CDRFLOW_BUS_URL": bus_url, "CDRFLOW_LOG_LEVEL": "WARNING"},
            )
    return bare, results

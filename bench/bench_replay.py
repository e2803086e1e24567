"""Replay: ``cdrflow replay`` on 20,000 saved mod_xml_cdr files (~10 KB each), in CDRs/s.

The physical limit is the same command, same files, posting to the bare FastAPI endpoint
(``bench/bare_app.py``) in the same run. Each server is one uvicorn subprocess; the replay client
is a ``cdrflow replay`` subprocess, so on 2 cores each side has one.

- ``ingest``: ``cdrflow serve ingest`` on the memory bus (the edge alone: decode, dedupe index,
  envelope, publish);
- ``all-in-one``: ``cdrflow run`` (ingest + parser + SQLite store in one process), the embedded
  default an operator replays into.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, free_port, python, report, save, server
from cdrflow.mock import generate_cdr

FILES = int(os.environ.get("BENCH_REPLAY_FILES", "20000"))
CONCURRENCY = 16


def write_files(root: Path, n: int) -> int:
    """``n`` switch-written files in two directories (log-dir and err-log-dir); total bytes."""
    rng = random.Random(3)
    total = 0
    for sub in ("log", "log/errors"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        call_id, xml = generate_cdr(rng, size_bytes=10_000)
        name = f"{call_id}.cdr.xml" if "<originator>" in xml else f"a_{call_id}.cdr.xml"
        data = xml.encode()
        (root / ("log/errors" if i % 10 == 0 else "log") / name).write_bytes(data)
        total += len(data)
    return total


def replay(root: Path, url: str, server_pid: int) -> dict[str, Any]:
    out = root.parent / f"report-{time.monotonic_ns()}.json"
    cpu0 = cpu_seconds(server_pid)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [
            python(),
            "-m",
            "cdrflow",
            "replay",
            str(root / "log"),
            "--url",
            url,
            "--concurrency",
            str(CONCURRENCY),
            "--report",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CDRFLOW_LOG_LEVEL": "WARNING"},
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = cpu_seconds(server_pid) - cpu0
    if not out.exists():
        raise RuntimeError(f"replay failed ({done.returncode}): {done.stderr[-2000:]}")
    data = json.loads(out.read_text())
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    n = data["accepted"] + data["duplicate"] + data["failed"]
    return {
        "per_s": data["per_second"],
        "seconds": data["seconds"],
        "wall_s": wall,
        "accepted": data["accepted"],
        "duplicate": data["duplicate"],
        "failed": data["failed"],
        "client_cpu_us_per_cdr": client_cpu / max(n, 1) * 1e6,
        "server_cpu_us_per_cdr": server_cpu / max(n, 1) * 1e6,
    }


def main() -> dict[str, Any]:
    figures: dict[str, Any] = {"files": FILES, "concurrency": CONCURRENCY}
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        root = Path(tmp) / "switch"
        started = time.perf_counter()
        figures["bytes_avg"] = write_files(root, FILES) / FILES
        figures["generate_s"] = time.perf_counter() - started
        quiet = {"CDRFLOW_LOG_LEVEL": "WARNING", "CDRFLOW_MOCK_RATE": "0"}
        uvi = [python(), "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
        cases: list[tuple[str, list[str], dict[str, str]]] = [
            ("bare", [*uvi, "bench.bare_app:app", "--port"], {}),
            ("ingest", [python(), "-m", "cdrflow", "serve", "ingest", "--port"], {}),
            (
                "allinone",
                [python(), "-m", "cdrflow", "run", "--port"],
                {"CDRFLOW_DATA_DIR": str(Path(tmp) / "data")},
            ),
        ]
        for label, args, env in cases:
            port = free_port()
            with server(
                [*args, str(port)], port, {**quiet, "CDRFLOW_BUS_URL": "memory://", **env}
            ) as proc:
                res = replay(root, f"http://127.0.0.1:{port}", proc.pid)
                if label == "ingest":  # the same files again: all answered duplicate
                    again = replay(root, f"http://127.0.0.1:{port}", proc.pid)
                    figures["ingest_again_per_s"] = again["per_s"]
                    figures["ingest_again_duplicate"] = again["duplicate"]
            figures.update({f"{label}_{k}": v for k, v in res.items()})
        for label in ("ingest", "allinone"):
            figures[f"{label}_ratio_to_bare"] = figures[f"{label}_per_s"] / figures["bare_per_s"]

    def row(label: str) -> str:
        ratio = f"  = {figures[label + '_ratio_to_bare']:.0%} of bare" if label != "bare" else ""
        return (
            f"{figures[label + '_per_s']:8,.0f} CDRs/s  ({figures[label + '_seconds']:.1f} s; "
            f"client {figures[label + '_client_cpu_us_per_cdr']:.0f} µs/CDR, "
            f"server {figures[label + '_server_cpu_us_per_cdr']:.0f} µs/CDR; "
            f"accepted {figures[label + '_accepted']}, failed {figures[label + '_failed']})"
            f"{ratio}"
        )

    report(
        f"replay: cdrflow replay of {FILES:,} mod_xml_cdr files "
        f"(~{figures['bytes_avg'] / 1000:.0f} KB), {CONCURRENCY} in flight; target ≥ 2,000 CDRs/s",
        [
            ("bare FastAPI (limit)", row("bare")),
            ("ingest, memory bus", row("ingest")),
            (
                "ingest, second run",
                f"{figures['ingest_again_per_s']:8,.0f} CDRs/s  "
                f"(duplicate {figures['ingest_again_duplicate']})",
            ),
            ("all-in-one + SQLite", row("allinone")),
        ],
    )
    save("replay", figures)
    return figures


if __name__ == "__main__":
    main()

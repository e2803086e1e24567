"""End to end: real FreeSWITCH CDRs acknowledged by ingest, stored by the parser, charged by
billing and counted by stats, each a separate ``cdrflow serve`` process on a Tansu broker and a
PostgreSQL cluster of the bench's own, against a bare FastAPI endpoint in the same run.

``python -m bench e2e`` (ingest alone on the broker, distributed, all-in-one, then the
stack's floor), or ``python -m bench e2e ingest|distributed|floor|allinone`` for some of them.
``E2E_SECONDS`` (default 15) and ``E2E_CONNECTIONS`` (default 16) change the load.

The stack's floor (``floor``, ``bench.floor_stack``): processes written directly on the fixed
stack's libraries (FastAPI + uvicorn, aiokafka, lxml, asyncpg, sqlite3) doing only what the
contract cannot do without (decode, check and durably produce the document; parse it, store it
idempotently and publish a record; price and count that record idempotently), run alone,
distributed and as one process (a durable log file and SQLite) exactly as cdrflow is. It is the
physical limit for cdrflow's own code: cdrflow's figures of the same run are printed as ratios
to it.

The load is wrk (C, a Lua script) when installed, else ``bench.loadgen``: the three FreeSWITCH XML
fixtures of ``tests/fixtures/freeswitch`` posted url-encoded (``cdr=``, the FusionPBX default), each
request with fresh uuids (every uuid of the document replaced) and times moved to now, so
every request is a new call that stats counts (not expired) and billing prices.

Figures:
- acked/s: 200 answers per second during the load (ack p50/p99 from the load generator);
- end to end CDR/s: the acked CDRs divided by the time from the start of the load to the moment
  the parser has stored, billing has charged and stats has counted every one of them (from
  their outcome counters), and the backlog left when the load stopped ("kept up" when the
  pipeline finished within 2 s of the load);
- CPU µs per CDR per process: user + system time from /proc/<pid>/stat (children included)
  over that same window, for ingest, parser, billing, stats, the broker and the PostgreSQL
  postmaster with all its backends;
- the load generator's own CPU per request (wrk's rusage, the one child reaped during the load),
  which shares the same two cores;
- for a one-process run, its event loop's thread: CPU per CDR, the rate that CPU bounds, and
  where its wall time went during the load (``LoopStates``: on a CPU, waiting for one, for the
  GIL, idle);
- ratios to the bare endpoint (the same load, in the same run).

The PostgreSQL cluster is the test harness's private one (``initdb``, fsync off): its CPU is the
pipeline's alone, not the shared cluster's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from bench.common import ROOT, free_port, python, report, save
from bench.loadgen import LoadResult, build_request, run_load

SECONDS = float(os.environ.get("E2E_SECONDS", "15"))
CONNECTIONS = int(os.environ.get("E2E_CONNECTIONS", "16"))
FIXTURES = ROOT / "tests" / "fixtures" / "freeswitch"
DRAIN_TIMEOUT_S = 180.0
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_STAMP = re.compile(r"(\d{4}-\d{2}-\d{2})%20(\d{2})%3A(\d{2})%3A(\d{2})")


# ---------------------------------------------------------------------------------------------
# The CDRs


def _moved_to_now(xml: str, now: int) -> str:
    """The document with every epoch (s and µs) and stamp shifted so the call ended ~now."""
    start = int(re.search(r"<start_epoch>(\d+)<", xml).group(1))  # type: ignore[union-attr]
    delta = now - 60 - start

    def epoch(m: re.Match[str]) -> str:
        value = int(m.group(0))
        if abs(value - start) < 86_400:
            return str(value + delta)
        if abs(value - start * 1_000_000) < 86_400_000_000:
            return str(value + delta * 1_000_000)
        return m.group(0)

    def stamp(m: re.Match[str]) -> str:
        then = datetime.strptime(
            f"{m.group(1)} {m.group(2)}:{m.group(3)}:{m.group(4)}", "%Y-%m-%d %H:%M:%S"
        )
        moved = datetime.fromtimestamp(then.replace(tzinfo=UTC).timestamp() + delta, UTC)
        return moved.strftime("%Y-%m-%d%%20%H%%3A%M%%3A%S")

    return _STAMP.sub(stamp, re.sub(r"(?<![0-9])\d{10}(?:\d{6})?(?![0-9])", epoch, xml))


def templates(now: int | None = None) -> list[tuple[str, int]]:
    """Each XML fixture as a url-encoded form body with its uuids replaced by ``@@U<n>@@``
    placeholders (n: the order of first appearance), and the number of distinct uuids."""
    now = now or int(time.time())
    out = []
    for path in sorted(FIXTURES.glob("freeswitch_xml_cdr_*.xml")):
        xml = _moved_to_now(path.read_text(), now)
        found: dict[str, int] = {}
        for u in _UUID.findall(xml):
            found.setdefault(u, len(found))
        body = "cdr=" + quote(xml, safe="")
        for u, n in found.items():
            body = body.replace(u, f"@@U{n}@@")
        out.append((body, len(found)))
    return out


_LUA = r"""
local templates = {}
local counts = {}
local n = 0

local threads = {}
local run = 0
local made = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  run = tonumber(args[1], 16)
  local i = 2
  while args[i] do
    local f = io.open(args[i], "rb")
    templates[#templates + 1] = f:read("*a")
    f:close()
    counts[#counts + 1] = tonumber(args[i + 1])
    i = i + 2
  end
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

function request()
  made = made + 1
  local k = (made % #templates) + 1
  local uuids = {}
  for j = 0, counts[k] - 1 do
    uuids["@@U" .. j .. "@@"] = string.format(
      "%08x-%04x-4%03x-a%03x-%012x", run, tid or 0, j, 0, made)
  end
  local body = templates[k]:gsub("@@U%d+@@", uuids)
  return wrk.format("POST", "/v1/cdr?uuid=" .. uuids["@@U0@@"], nil, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    "WRK_JSON {\"requests\": %d, \"duration_us\": %d, \"status_errors\": %d, " ..
    "\"socket_errors\": %d, \"p50_us\": %d, \"p99_us\": %d}\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


class Load:
    """Posts fresh CDRs to a port for a while; wrk when installed, else bench.loadgen."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.wrk = shutil.which("wrk")
        self.templates = templates()
        self.script = workdir / "e2e.lua"
        self.script.write_text(_LUA)
        self.files = []
        for n, (body, _) in enumerate(self.templates):
            f = workdir / f"cdr{n}.form"
            f.write_text(body)
            self.files.append(f)
        self.tool = "wrk" if self.wrk else "bench.loadgen"

    def run(self, port: int, seconds: float, connections: int) -> dict[str, float]:
        if self.wrk:
            return self._wrk(port, seconds, connections)
        return self._loadgen(port, seconds, connections)

    def _wrk(self, port: int, seconds: float, connections: int) -> dict[str, float]:
        args = [f"{uuid.uuid4().int & 0xFFFFFFFF:08x}"]
        for f, (_, count) in zip(self.files, self.templates, strict=True):
            args += [str(f), str(count)]
        # wrk's own CPU: the only child this process reaps while it runs.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [
                self.wrk,
                "-t2",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                str(self.script),
                f"http://127.0.0.1:{port}",
                "--",
                *args,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        line = next(ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON "))
        raw = json.loads(line[len("WRK_JSON ") :])
        secs = raw["duration_us"] / 1e6
        ok = raw["requests"] - raw["status_errors"]
        load_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        return {
            "load_cpu_us": load_cpu / max(raw["requests"], 1) * 1e6,
            "requests": raw["requests"],
            "acked": ok,
            "errors": raw["status_errors"] + raw["socket_errors"],
            "seconds": secs,
            "rps": ok / secs,
            "p50_ms": raw["p50_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000,
        }

    def _loadgen(self, port: int, seconds: float, connections: int) -> dict[str, float]:
        # Without wrk: a pool of distinct requests, each sent once at most per pool turn (the
        # pool is large enough for the run at the rates this bench sees).
        pool = []
        run = uuid.uuid4().int & 0xFFFFFFFF
        for i in range(int(seconds * 4000)):
            body, count = self.templates[i % len(self.templates)]
            uuids = [f"{run:08x}-0000-4{j:03x}-a000-{i:012x}" for j in range(count)]
            for j, u in enumerate(uuids):
                body = body.replace(f"@@U{j}@@", u)
            pool.append(
                build_request(
                    f"/v1/cdr?uuid={uuids[0]}", body.encode(), "application/x-www-form-urlencoded"
                )
            )
        res: LoadResult = asyncio.run(
            run_load("127.0.0.1", port, pool, seconds=seconds, connections=connections)
        )
        ok = res.requests - res.errors
        return {
            "requests": res.requests,
            "acked": ok,
            "errors": res.errors,
            "seconds": res.seconds,
            "rps": ok / res.seconds,
            "p50_ms": res.pct(50),
            "p99_ms": res.pct(99),
        }


# ---------------------------------------------------------------------------------------------
# Processes and their CPU


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def tree_cpu_seconds(pid: int) -> float:
    """CPU of ``pid`` (with its reaped children) plus every live process below it."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                children.setdefault(_ppid(int(entry.name)), []).append(int(entry.name))
    stack = [pid]
    while stack:
        p = stack.pop()
        with contextlib.suppress(OSError, IndexError, ValueError):
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            # utime, stime, cutime, cstime (reaped children: exited PostgreSQL backends)
            total += sum(int(x) for x in f[11:15]) / tick
        stack.extend(children.get(p, []))
    return total


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """Each live thread of ``pid``: its name (``comm``) and CPU seconds (user + system)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (task / "stat").read_text()
                comm = stat.split("(", 1)[1].rsplit(")", 1)[0]
                f = stat.rsplit(")", 1)[1].split()
                out[int(task.name)] = (comm, (int(f[11]) + int(f[12])) / tick)
    return out


# The system call numbers of the event loop's waits, as /proc/<pid>/task/<tid>/syscall prints
# them (x86_64, else arm64): futex is where a Python thread waits for the GIL (or a lock);
# epoll_wait and epoll_pwait are where an asyncio loop with nothing ready sleeps.
_X86_64 = platform.machine() in ("x86_64", "AMD64")
_FUTEX = {"202"} if _X86_64 else {"98"}
_EPOLL = {"232", "281"} if _X86_64 else {"22"}


class LoopStates:
    """Where one thread's wall time goes over a window: on a CPU and waiting for one (the
    scheduler's own counts, ``/proc/<pid>/task/<tid>/schedstat``), and, of the time it was
    asleep, the share in ``futex`` (the GIL held by another thread, or a lock) against
    ``epoll`` (the loop had nothing to run), sampled from ``.../syscall`` every ~4 ms by a thread
    of the bench's own process (docs/performance.md, "Tenth round")."""

    def __init__(self, pid: int, tid: int | None = None, period_s: float = 0.004) -> None:
        self._task = Path(f"/proc/{pid}/task/{tid or pid}")
        self._period = period_s
        self._counts = {"futex": 0, "epoll": 0, "other": 0, "running": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="loop-states", daemon=True)
        self._t0 = time.monotonic()
        self._s0 = self._schedstat()
        self._thread.start()

    def _schedstat(self) -> tuple[int, int]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            run, wait, _ = (self._task / "schedstat").read_text().split()
            return int(run), int(wait)
        return 0, 0

    def _sample(self) -> None:
        counts = self._counts
        while not self._stop.wait(self._period):
            try:
                call = (self._task / "syscall").read_text().split(maxsplit=1)[0]
            except (OSError, IndexError):
                return
            if call == "running":
                counts["running"] += 1
            elif call in _FUTEX:
                counts["futex"] += 1
            elif call in _EPOLL:
                counts["epoll"] += 1
            else:
                counts["other"] += 1

    def stop(self) -> dict[str, float]:
        """Shares of the window: ``on_cpu`` and ``runnable`` (waiting for a CPU) from the
        scheduler; ``gil`` (futex), ``idle`` (epoll) and ``other`` split the rest by the samples
        taken while the thread was in a system call."""
        self._stop.set()
        self._thread.join()
        wall_ns = (time.monotonic() - self._t0) * 1e9
        run, wait = (b - a for a, b in zip(self._s0, self._schedstat(), strict=True))
        on_cpu, runnable = run / wall_ns, wait / wall_ns
        asleep = max(0.0, 1.0 - on_cpu - runnable)
        c = self._counts
        in_call = c["futex"] + c["epoll"] + c["other"]
        calls = ("futex", "epoll", "other")
        split = {k: asleep * c[k] / in_call if in_call else 0.0 for k in calls}
        return {
            "on_cpu": on_cpu,
            "runnable": runnable,
            "gil": split["futex"],
            "idle": split["epoll"],
            "other": split["other"],
            "samples": float(sum(c.values())),
        }


def _own_cpu_seconds(pid: int) -> float:
    """CPU of ``pid`` itself (every thread, exited ones included; no children)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _threads_figures(
    pid: int, t0: dict[int, tuple[str, float]], own0: float, seconds: float, acked: float
) -> dict[str, Any]:
    """One process's CPU split between its main thread (the event loop's, which holds the GIL
    for all the Python) and the others (worker threads: SQLite's, the executor's, the log's
    writes and fsyncs), per acked CDR, and the main thread's share of the window's wall time."""
    t1 = thread_cpu_seconds(pid)
    own = _own_cpu_seconds(pid) - own0
    main = t1.get(pid, ("", 0.0))[1] - t0.get(pid, ("", 0.0))[1]
    others = sorted(
        (
            (c - t0.get(tid, (name, 0.0))[1], tid, name)
            for tid, (name, c) in t1.items()
            if tid != pid
        ),
        reverse=True,
    )
    per = 1e6 / max(acked, 1)
    return {
        "main_us": main * per,
        "others_us": (own - main) * per,
        "main_busy": main / max(seconds, 1e-9),
        "threads": len(t1),
        "busiest_us": [round(c * per) for c, _, _ in others[:3]],
    }


def _metrics(port: int) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("cdrflow_") and "_total{" in line and 'outcome="' in line:
            name = line.split("{", 1)[0]
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            out[(name, outcome)] = out.get((name, outcome), 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def progress(ports: dict[str, int]) -> dict[str, float]:
    """CDRs done per stage, from the stages' own outcome counters: parser stored (+ dead
    letters, reported apart), billing charged or unpriced, stats counted (+ expired)."""
    m: dict[tuple[str, str], float] = {}
    for port in set(ports.values()):
        m.update(_metrics(port))
    billing = sum(
        v
        for (name, outcome), v in m.items()
        if name == "cdrflow_billing_charges_total" and outcome not in ("duplicate", "invalid")
    )
    return {
        "stored": m.get(("cdrflow_parser_cdrs_total", "stored"), 0.0),
        "dead_letter": m.get(("cdrflow_parser_cdrs_total", "dead_letter"), 0.0),
        "charged": billing,
        "counted": m.get(("cdrflow_stats_cdrs_total", "counted"), 0.0),
        "expired": m.get(("cdrflow_stats_cdrs_total", "expired"), 0.0),
    }


def _done(p: dict[str, float]) -> float:
    return min(p["stored"] + p["dead_letter"], p["charged"], p["counted"] + p["expired"])


@contextlib.contextmanager
def _proc(
    args: list[str], port: int, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    from cdrkit.testing.processes import spawn, stop

    with log.open("ab") as out:
        proc = spawn(args, env={**os.environ, **env}, cwd=ROOT, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{args} exited early: {log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args} not ready: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        stop(proc)


@contextlib.contextmanager
def _bare(workdir: Path) -> Iterator[tuple[int, int]]:
    from cdrkit.testing.processes import spawn, stop

    port = free_port()
    args = [python(), "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
    with (workdir / "bare.log").open("ab") as out:
        proc = spawn(
            [*args, "bench.bare_app:app", "--port", str(port)], cwd=ROOT, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bare endpoint did not start")
            time.sleep(0.2)
        yield proc.pid, port
    finally:
        stop(proc)


def bare(load: Load, workdir: Path) -> dict[str, float]:
    with _bare(workdir) as (pid, port):
        load.run(port, 2, 4)
        cpu0 = tree_cpu_seconds(pid)
        res = load.run(port, SECONDS, CONNECTIONS)
        res["cpu_us"] = (tree_cpu_seconds(pid) - cpu0) / max(res["requests"], 1) * 1e6
    return res


def _drive(
    load: Load, ingest_port: int, ports: dict[str, int], pids: dict[str, int]
) -> dict[str, Any]:
    """Warm up, then the measured load and the drain; figures for the window."""
    base = _done(progress(ports))
    warm = load.run(ingest_port, 2, 4)
    _wait(ports, base + warm["acked"], 60)
    start_done = _done(progress(ports))
    cpu0 = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
    (one_pid,) = pids.values() if len(pids) == 1 else (None,)
    threads0 = thread_cpu_seconds(one_pid) if one_pid else {}
    own0 = _own_cpu_seconds(one_pid) if one_pid else 0.0
    spies = _profile(pids)
    t0 = time.monotonic()
    states = LoopStates(one_pid) if one_pid else None
    res = load.run(ingest_port, SECONDS, CONNECTIONS)
    loop_states = states.stop() if states else None
    for spy in spies:
        spy.wait()
    t_load = time.monotonic()
    at_load_end = _done(progress(ports)) - start_done
    target = start_done + res["acked"]
    final = _wait(ports, target, DRAIN_TIMEOUT_S)
    t_end = time.monotonic()
    cpu = {name: tree_cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
    acked = res["acked"]
    threads = _threads_figures(one_pid, threads0, own0, t_end - t0, acked) if one_pid else None
    # A warm-up CDR still in flight at start_done can be counted in the window: cap at acked.
    done = min(_done(final) - start_done, acked)
    return {
        **{f"ack_{k}": v for k, v in res.items()},
        "backlog_at_load_end": acked - at_load_end,
        "drain_s": t_end - t_load,
        "e2e_done": done,
        "e2e_cdr_s": done / (t_end - t0),
        "kept_up": (t_end - t_load) < 2.0 and done >= acked,
        "lost": acked - done,
        "dead_letters": final["dead_letter"],
        "cpu_us": {name: c / max(acked, 1) * 1e6 for name, c in cpu.items()},
        **({"threads": threads} if threads else {}),
        **({"loop_states": loop_states} if loop_states else {}),
    }


def _profile(pids: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    """With ``E2E_PROFILE=<dir>``: py-spy (if installed) records each Python process during the
    load into ``<dir>/<name>.txt`` (collapsed stacks; its own CPU then counts in the figures)."""
    out = os.environ.get("E2E_PROFILE")
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not out or not Path(spy).exists():
        return []
    Path(out).mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--format",
                "raw",
                "--nonblocking",
                "-r",
                "200",
                "-d",
                str(max(1, round(SECONDS))),
                "-p",
                str(pid),
                "-o",
                f"{out}/{name}.txt",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
        if name not in ("broker", "postgres")
    ]


def _wait(ports: dict[str, int], target: float, timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        p = progress(ports)
        if _done(p) >= target or time.monotonic() > deadline:
            return p
        time.sleep(0.25)


def distributed(load: Load, workdir: Path) -> dict[str, Any]:
    from cdrkit.testing.postgres import PrivateCluster
    from cdrkit.testing.tansu import TansuBroker

    with PrivateCluster() as pg, TansuBroker() as broker:
        db_url = pg.create_database("cdrflow")
        postmaster = int((pg.data / "postmaster.pid").read_text().split("\n", 1)[0])
        broker_pid = broker._process.pid  # type: ignore[union-attr]
        env = {
            # E2E_BUS_OPTIONS: more bus URL options, e.g. "compression=none".
            "CDRFLOW_BUS_URL": "&".join(
                filter(None, [broker.url, os.environ.get("E2E_BUS_OPTIONS")])
            ),
            "CDRFLOW_DATABASE_URL": db_url,
            "CDRFLOW_DATA_DIR": str(workdir / "data"),
            "CDRFLOW_LOG_LEVEL": "WARNING",
        }
        names = ["ingest", "parser", "billing", "stats"]
        ports = {name: free_port() for name in names}
        with contextlib.ExitStack() as stack:
            pids: dict[str, int] = {}
            for name in names:
                proc = stack.enter_context(
                    _proc(
                        [python(), "-m", "cdrflow", "serve", name, "--port", str(ports[name])],
                        ports[name],
                        env,
                        workdir / f"{name}.log",
                    )
                )
                pids[name] = proc.pid
            pids["broker"] = broker_pid
            pids["postgres"] = postmaster
            stage_ports = {k: ports[k] for k in ("parser", "billing", "stats")}
            return _drive(load, ports["ingest"], stage_ports, pids)


def ingest_alone(load: Load, workdir: Path) -> dict[str, Any]:
    """``cdrflow serve ingest`` on Tansu with nothing consuming: what the edge takes by itself
    (every request a new call, so none is answered from the duplicate window)."""
    from cdrkit.testing.tansu import TansuBroker

    with TansuBroker() as broker:
        port = free_port()
        env = {
            "CDRFLOW_BUS_URL": broker.url,
            "CDRFLOW_DATA_DIR": str(workdir / "ingest-alone"),
            "CDRFLOW_LOG_LEVEL": "WARNING",
        }
        args = [python(), "-m", "cdrflow", "serve", "ingest", "--port", str(port)]
        with _proc(args, port, env, workdir / "ingest-alone.log") as proc:
            pids = {"ingest": proc.pid, "broker": broker._process.pid}  # type: ignore[union-attr]
            return _drive_alone(load, port, pids, "ingest-alone")


def _drive_alone(load: Load, port: int, pids: dict[str, int], profile: str) -> dict[str, Any]:
    """Warm up, then the measured load on an edge with nothing consuming behind it."""
    load.run(port, 2, 4)
    cpu0 = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
    spies = _profile({profile: next(iter(pids.values()))})
    res = load.run(port, SECONDS, CONNECTIONS)
    for spy in spies:
        spy.wait()
    cpu = {name: tree_cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
    return {
        **{f"ack_{k}": v for k, v in res.items()},
        "cpu_us": {name: c / max(res["acked"], 1) * 1e6 for name, c in cpu.items()},
    }


def allinone(load: Load, workdir: Path) -> dict[str, Any]:
    port = free_port()
    env = {"CDRFLOW_DATA_DIR": str(workdir / "run"), "CDRFLOW_LOG_LEVEL": "WARNING"}
    for name in ("CDRFLOW_DATABASE_URL", "CDRFLOW_BUS_URL"):
        os.environ.pop(name, None)
    with _proc(
        [python(), "-m", "cdrflow", "run", "--port", str(port)], port, env, workdir / "run.log"
    ) as proc:
        return _drive(load, port, {"all": port}, {"cdrflow run": proc.pid})


def _floor_proc(
    stack: contextlib.ExitStack, role: str, env: dict[str, str], workdir: Path
) -> tuple[int, int]:
    port = free_port()
    args = [python(), "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
    proc = stack.enter_context(
        _proc(
            [*args, "bench.floor_stack:app", "--port", str(port)],
            port,
            {**env, "FLOOR_ROLE": role},
            workdir / f"floor-{role}.log",
        )
    )
    return proc.pid, port


def floor_alone(load: Load, workdir: Path) -> dict[str, Any]:
    """The floor's ingest (``bench.floor_stack``) on Tansu with nothing consuming: what the
    stack's libraries alone cost to decode, check and durably produce a CDR."""
    from cdrkit.testing.tansu import TansuBroker

    with TansuBroker() as broker, contextlib.ExitStack() as stack:
        env = {"FLOOR_BOOTSTRAP": broker.bootstrap_servers}
        pid, port = _floor_proc(stack, "ingest", env, workdir)
        pids = {"floor ingest": pid, "broker": broker._process.pid}  # type: ignore[union-attr]
        return _drive_alone(load, port, pids, "floor-ingest-alone")


def floor_distributed(load: Load, workdir: Path) -> dict[str, Any]:
    """The floor's four processes (``bench.floor_stack``) on Tansu and PostgreSQL, driven and
    measured exactly as ``distributed``."""
    from cdrkit.testing.postgres import PrivateCluster
    from cdrkit.testing.tansu import TansuBroker

    with PrivateCluster() as pg, TansuBroker() as broker, contextlib.ExitStack() as stack:
        dsn = pg.create_database("floor").replace("postgresql+asyncpg://", "postgresql://")
        postmaster = int((pg.data / "postmaster.pid").read_text().split("\n", 1)[0])
        env = {"FLOOR_BOOTSTRAP": broker.bootstrap_servers, "FLOOR_DSN": dsn}
        pids: dict[str, int] = {}
        ports: dict[str, int] = {}
        for role in ("ingest", "parser", "billing", "stats"):
            pids[f"floor {role}"], ports[role] = _floor_proc(stack, role, env, workdir)
        pids["broker"] = broker._process.pid  # type: ignore[union-attr]
        pids["postgres"] = postmaster
        stage_ports = {k: ports[k] for k in ("parser", "billing", "stats")}
        res = _drive(load, ports["ingest"], stage_ports, pids)
        res["rows"] = asyncio.run(_floor_rows_stored(dsn))
        return res


async def _floor_rows_stored(dsn: str) -> dict[str, int]:
    """What the floor's sinks hold at the end (its work was done, not only counted)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return {
            "cdrs": await conn.fetchval("SELECT count(*) FROM cdrs WHERE raw_lz4 IS NOT NULL"),
            "charges": await conn.fetchval("SELECT count(*) FROM charges"),
            "counted": await conn.fetchval("SELECT coalesce(sum(calls), 0) FROM buckets"),
        }
    finally:
        await conn.close()


def floor_allinone(load: Load, workdir: Path) -> dict[str, Any]:
    """The floor's one-process role (``bench.floor_stack``, ``allinone``), driven and measured
    exactly as ``allinone``."""
    with contextlib.ExitStack() as stack:
        pid, port = _floor_proc(
            stack, "allinone", {"FLOOR_DIR": str(workdir / "floor-allinone")}, workdir
        )
        res = _drive(load, port, {"all": port}, {"floor all-in-one": pid})
    db = sqlite3.connect(workdir / "floor-allinone" / "floor.sqlite3")
    try:
        res["rows"] = {
            "cdrs": db.execute("SELECT count(*) FROM cdrs WHERE raw_lz4 IS NOT NULL").fetchone()[0],
            "charges": db.execute("SELECT count(*) FROM charges").fetchone()[0],
            "counted": db.execute("SELECT coalesce(sum(calls), 0) FROM buckets").fetchone()[0],
        }
    finally:
        db.close()
    return res


def floor(load: Load, workdir: Path) -> dict[str, Any]:
    return {
        "alone": floor_alone(load, workdir),
        "distributed": floor_distributed(load, workdir),
        "allinone": floor_allinone(load, workdir),
    }


CDRFLOW = ("ingest", "parser", "billing", "stats")
FLOOR = tuple(f"floor {name}" for name in CDRFLOW)


def main(modes: list[str] | None = None) -> dict[str, Any]:
    modes = modes or ["ingest", "distributed", "allinone", "floor"]
    workdir = Path(tempfile.mkdtemp(prefix="cdrflow-e2e-"))
    load = Load(workdir)
    figures: dict[str, Any] = {"seconds": SECONDS, "connections": CONNECTIONS, "load": load.tool}
    try:
        b = bare(load, workdir)
        figures["bare"] = b
        rows = [
            (
                "bare FastAPI (limit)",
                f"{b['rps']:7.0f} req/s  p50 {b['p50_ms']:.1f} ms  p99 {b['p99_ms']:.1f} ms  "
                f"CPU {b['cpu_us']:.0f} µs/req"
                + (f", load generator {b['load_cpu_us']:.0f} µs/req" if "load_cpu_us" in b else ""),
            )
        ]
        for mode in modes:
            run = {
                "ingest": ingest_alone,
                "distributed": distributed,
                "allinone": allinone,
                "floor": floor,
            }
            r = run[mode](load, workdir)
            figures[mode] = r
            if mode == "ingest":
                rows += _ingest_rows(r, b)
            elif mode == "floor":
                rows += _floor_rows(r, b, figures)
            else:
                rows += _rows(mode, r, b)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(
        f"e2e: FreeSWITCH XML CDRs (fresh uuids), {CONNECTIONS} connections, {SECONDS:.0f} s, "
        f"load by {load.tool}, {os.cpu_count()} CPUs",
        rows,
    )
    save("e2e", figures)
    return figures


def _ingest_rows(r: dict[str, Any], b: dict[str, float]) -> list[tuple[str, str]]:
    return [
        (
            "ingest alone: acked",
            f"{r['ack_rps']:7.0f} CDR/s  p50 {r['ack_p50_ms']:.1f} ms  "
            f"p99 {r['ack_p99_ms']:.1f} ms  = {r['ack_rps'] / b['rps']:.0%} of bare "
            f"(errors {r['ack_errors']:.0f})",
        ),
        *[(f"ingest alone: CPU {name}", f"{us:7.0f} µs/CDR") for name, us in r["cpu_us"].items()],
    ]


def _floor_rows(
    r: dict[str, Any], b: dict[str, float], figures: dict[str, Any]
) -> list[tuple[str, str]]:
    """The floor's rows, and cdrflow's figures of the same run as ratios to them."""
    alone, dist = r["alone"], r["distributed"]
    rows = [
        (
            "floor ingest alone: acked",
            f"{alone['ack_rps']:7.0f} CDR/s  p50 {alone['ack_p50_ms']:.1f} ms  "
            f"p99 {alone['ack_p99_ms']:.1f} ms  = {alone['ack_rps'] / b['rps']:.0%} of bare "
            f"(errors {alone['ack_errors']:.0f})",
        ),
        *[
            (f"floor ingest alone: CPU {name}", f"{us:7.0f} µs/CDR")
            for name, us in alone["cpu_us"].items()
        ],
        *_rows("floor", dist, b),
        (
            "floor: rows at the end",
            ", ".join(f"{k} {v}" for k, v in dist["rows"].items())
            + " (warm-up included: each is every CDR acked, once)",
        ),
    ]
    total = sum(dist["cpu_us"].values())
    wrk = dist.get("ack_load_cpu_us")
    rows.append(
        (
            "floor: 2 cores at that CPU",
            f"{2e6 / total:7.0f} CDR/s at most end to end (broker and database included)"
            + (
                f"; {2e6 / (total + wrk):.0f} with the load generator's {wrk:.0f} µs/req"
                if wrk
                else ""
            ),
        )
    )
    one = r["allinone"]
    rows += [
        *[(f"floor {k}", v) for k, v in _rows("all-in-one", one, b) if "processes" not in k],
        (
            "floor all-in-one: rows at the end",
            ", ".join(f"{k} {v}" for k, v in one["rows"].items()),
        ),
        (
            "floor all-in-one: one core",
            f"{1e6 / one['cpu_us']['floor all-in-one']:7.0f} CDR/s at most (one process: "
            "one core for its Python)",
        ),
    ]
    if "ingest" in figures:
        ing = figures["ingest"]
        rows.append(
            (
                "cdrflow ingest alone / floor",
                f"{ing['ack_rps'] / alone['ack_rps']:7.0%} of the floor's rate, "
                f"{ing['cpu_us']['ingest'] / alone['cpu_us']['floor ingest']:.2f}x its CPU",
            )
        )
    if "distributed" in figures:
        d = figures["distributed"]
        own = sum(v for k, v in d["cpu_us"].items() if k in CDRFLOW)
        floor_own = sum(v for k, v in dist["cpu_us"].items() if k in FLOOR)
        rows.append(
            (
                "cdrflow distributed / floor",
                f"{d['e2e_cdr_s'] / dist['e2e_cdr_s']:7.0%} of the floor's end-to-end rate, "
                f"{own / floor_own:.2f}x its processes' CPU",
            )
        )
    if "allinone" in figures:
        a = figures["allinone"]
        rows.append(
            (
                "cdrflow all-in-one / floor",
                f"{a['e2e_cdr_s'] / one['e2e_cdr_s']:7.0%} of the floor's end-to-end rate, "
                f"{a['cpu_us']['cdrflow run'] / one['cpu_us']['floor all-in-one']:.2f}x its CPU",
            )
        )
    return rows


def _thread_rows(mode: str, r: dict[str, Any]) -> list[tuple[str, str]]:
    """A one-process run's CPU by thread: the event loop's (main) thread against the others."""
    t = r.get("threads")
    if not t:
        return []
    return [
        (
            f"{mode}: CPU loop thread",
            f"{t['main_us']:7.0f} µs/CDR  (busy {t['main_busy']:.0%} of the window; "
            f"other threads {t['others_us']:.0f} µs/CDR, {t['threads'] - 1} live, busiest "
            + " / ".join(str(us) for us in t["busiest_us"])
            + ")",
        ),
        (
            f"{mode}: loop thread's bound",
            f"{1e6 / max(t['main_us'], 1e-9):7.0f} CDR/s at most (its thread on a CPU all the "
            "time at this cost per CDR; it runs all of the process's Python)",
        ),
        *_loop_state_rows(mode, r.get("loop_states")),
    ]


def _loop_state_rows(mode: str, s: dict[str, float] | None) -> list[tuple[str, str]]:
    """The loop thread's wall time during the load: what bounds a one-process run."""
    if not s:
        return []
    return [
        (
            f"{mode}: loop thread's time",
            f"on a CPU {s['on_cpu']:.0%}, waiting for a CPU {s['runnable']:.0%}, "
            f"for the GIL or a lock {s['gil']:.0%}, idle {s['idle']:.0%}, "
            f"other calls {s['other']:.0%} (load window, {s['samples']:.0f} samples)",
        )
    ]


def _rows(mode: str, r: dict[str, Any], b: dict[str, float]) -> list[tuple[str, str]]:
    cpu = r["cpu_us"]
    own = sum(v for k, v in cpu.items() if k in (*CDRFLOW, *FLOOR, "cdrflow run"))
    return [
        (
            f"{mode}: acked",
            f"{r['ack_rps']:7.0f} CDR/s  p50 {r['ack_p50_ms']:.1f} ms  "
            f"p99 {r['ack_p99_ms']:.1f} ms  = {r['ack_rps'] / b['rps']:.0%} of bare "
            f"(errors {r['ack_errors']:.0f})",
        ),
        (
            f"{mode}: end to end",
            f"{r['e2e_cdr_s']:7.0f} CDR/s  stored+charged+counted {r['e2e_done']:.0f} of "
            f"{r['ack_acked']:.0f} acked; backlog at load end {r['backlog_at_load_end']:.0f}, "
            f"drained {r['drain_s']:.1f} s later ({'kept up' if r['kept_up'] else 'fell behind'})"
            f"; dead letters {r['dead_letters']:.0f}",
        ),
        *[(f"{mode}: CPU {name}", f"{us:7.0f} µs/CDR") for name, us in cpu.items()],
        *_thread_rows(mode, r),
        (
            f"{mode}: CPU {'floor' if mode == 'floor' else 'cdrflow'} processes",
            f"{own:7.0f} µs/CDR (bare endpoint {b['cpu_us']:.0f} µs/req); with broker and "
            f"database {sum(cpu.values()):.0f} µs/CDR",
        ),
    ]


if __name__ == "__main__":
    main(sys.argv[1:] or None)

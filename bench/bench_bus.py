"""The durable in-process bus (``memory://…?dir=``, what ``cdrflow run`` uses): sustained rate
of acknowledged 10 KB sends from 16 concurrent producers (ingest's shape: one send per post),
each waiting for its fsync, against the limit measured in the same run on the same disk: the
same bytes appended with ``os.write`` and ``fsync``'d once per group of the size the bus's group
commit achieved. Also the in-memory bus (no log) for scale.

``BENCH_BUS_SECONDS`` (default 3) sets the measuring time of each part.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import report, save
from cdrkit.bus import memory_broker, open_bus
from cdrkit.bus.journal import write_counts

SECONDS = float(os.environ.get("BENCH_BUS_SECONDS", "3"))
PRODUCERS = 16
VALUE = os.urandom(5 * 1024).hex().encode()  # 10 KB, like a FreeSWITCH CDR envelope


async def _sends(url: str) -> tuple[float, int]:
    """(acknowledged sends per second, sends)."""
    bus = open_bus(url)
    await bus.start()
    await bus.ensure_topics(["bench"])
    stop = time.perf_counter() + SECONDS
    done = 0

    async def producer(n: int) -> None:
        nonlocal done
        key = f"k{n}".encode()
        while time.perf_counter() < stop:
            await bus.producer.send("bench", VALUE, key=key)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(producer(n) for n in range(PRODUCERS)))
    elapsed = time.perf_counter() - started
    await bus.close()
    memory_broker.reset(url)
    return done / elapsed, done


def _raw(directory: Path, per_round: int, files: int) -> float:
    """Messages per second written the way the bus's group commit wrote them, without the bus:
    rounds of ``per_round`` messages spread over ``files`` append-only files, each fsync'd."""
    frame = VALUE + b"\0" * 32  # the value plus about a frame header
    fds = [
        os.open(directory / f"raw{i}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        for i in range(files)
    ]
    share = max(1, per_round // files)
    done = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < SECONDS:
            for fd in fds:
                os.write(fd, frame * share)
                os.fsync(fd)
            done += share * files
    finally:
        for fd in fds:
            os.close(fd)
    return done / (time.perf_counter() - started)


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="cdrflow-bench-bus-") as tmp:
        durable_url = f"memory://bench-{uuid.uuid4().hex}?partitions=4&dir={tmp}/bus"
        writes0, fsyncs0 = write_counts()
        durable_rate, durable_n = asyncio.run(_sends(durable_url))
        writes1, fsyncs1 = write_counts()
        memory_rate, _ = asyncio.run(_sends(f"memory://bench-{uuid.uuid4().hex}?partitions=4"))
        # The shape the group commit reached: messages per round, files fsync'd per round.
        rounds = max(writes1 - writes0, 1)
        per_round = max(1, round(durable_n / rounds))
        files = max(1, round((fsyncs1 - fsyncs0) / rounds))
        group = per_round
        limit = _raw(Path(tmp), per_round, files)
    figures = {
        "durable_sends_per_s": durable_rate,
        "memory_sends_per_s": memory_rate,
        "messages_per_round": float(group),
        "fsyncs_per_round": float(files),
        "raw_append_fsync_per_s": limit,
        "ratio_to_limit": durable_rate / limit,
    }
    report(
        "durable in-process bus (measured on this machine; label loaded machines as such)",
        [
            ("durable sends/s", f"{durable_rate:,.0f} ({PRODUCERS} producers, 10 KB, fsync'd)"),
            ("in-memory sends/s", f"{memory_rate:,.0f}"),
            ("group commit", f"{group} messages, {files} fsyncs a round"),
            ("limit: raw append+fsync/s", f"{limit:,.0f} (same bytes, same grouping)"),
            ("ratio to limit", f"{durable_rate / limit:.2f}"),
        ],
    )
    save("bus", figures)
    return figures

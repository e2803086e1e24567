"""The stores' server side per CDR: what PostgreSQL spends on the parser's, billing's and stats'
batch statements, statement by statement (issue 15, ninth round, "The stores (h9sinks)" in
docs/performance.md). Not part of ``make bench``.

A private cluster (``PrivateCluster``: initdb, fsync off, as the e2e bench) with
``pg_stat_statements``; the three services' migrations, then ``--ddl`` statements if given (to
try a variant: an index dropped, made partial, …). The e2e bench's fixtures with fresh uuids, per
round: the parser's ``store_batch`` of their rows (``cdr_row``, ``raw_row``: the store side
only), billing's and stats' ``handle_batch`` of their normalised CDRs, in batches of ``size``.
Figures per round, best and median over rounds, µs per CDR: the CPU of the whole cluster (the
postmaster and every child, from /proc: the backends, the WAL writer, the checkpointer) during
each service's part; then ``pg_stat_statements``' execution time per CDR for every statement of
the last round, and each table's and index's size.

``.venv/bin/python -m bench.store_cpu [--rounds 5] [--size 130] [--n 1560] [--ddl SQL] …``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.consumers_cpu import envelopes
from bench.sinks_cpu import Collect
from cdr_billing.repository import BillingRepository
from cdr_billing.service import BillingService
from cdr_billing.settings import BillingSettings
from cdr_parser.outcomes import outcome_of
from cdr_parser.repository import CdrRepository
from cdr_parser.rows import cdr_row, raw_row
from cdr_stats.plugins import PluginSet
from cdr_stats.repository import StatsRepository
from cdr_stats.service import StatsService
from cdr_stats.settings import StatsSettings
from cdrkit.bus import Message
from cdrkit.db import create_engine, migrate, session_factory
from cdrkit.testing.postgres import PrivateCluster
from cdrmodel import CDR, RawEnvelope

TICK = os.sysconf("SC_CLK_TCK")


def cluster_cpu(postmaster: int) -> float:
    """CPU seconds (user + system) of the postmaster and its live children."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster or ppid == postmaster:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


async def _services(
    sessions: Any, dialect: str
) -> tuple[CdrRepository, BillingService, StatsService]:
    """The parser's repository and the billing and stats services on ``sessions``, built as
    their apps build them (the default tariff in place), with a producer that only collects."""
    repo = CdrRepository(sessions, dialect)
    billing = BillingService(BillingSettings(), BillingRepository(sessions, dialect), Collect())
    await billing.ensure_default_tariff()
    await billing.refresh_tariffs()
    settings = StatsSettings()
    stats = StatsService(settings, StatsRepository(sessions, dialect), PluginSet.load(settings))
    return repo, billing, stats


async def run(pg: PrivateCluster, url: str, args: argparse.Namespace) -> None:
    postmaster = int((pg.data / "postmaster.pid").read_text().split("\n", 1)[0])
    admin = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    await admin.execute("CREATE EXTENSION pg_stat_statements")
    if args.explain:
        for setting in (
            "session_preload_libraries = 'auto_explain'",
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_analyze = on",
            "auto_explain.log_buffers = on",
            "auto_explain.log_wal = on",
        ):
            await admin.execute(f"ALTER DATABASE store_cpu SET {setting}")
    engine = create_engine(url)
    try:
        await migrate(engine, "cdr_parser.migrations", "alembic_version_parser")
        await migrate(engine, "cdr_billing.migrations", "alembic_version_billing")
        await migrate(engine, "cdr_stats.migrations", "alembic_version_stats")
        for sql in args.ddl:
            await admin.execute(sql)
        sessions = session_factory(engine)
        repo, billing, stats = await _services(sessions, "postgresql")
        await repo.ensure_partitions(datetime.now(UTC), 1)
        n, size = args.n, args.size
        spent: dict[str, list[float]] = {"parser": [], "billing": [], "stats": []}
        for r in range(args.rounds):
            envs = [RawEnvelope.from_json(m) for m in envelopes(n)]
            mapped = [outcome_of(e, None, 1e9) for e in envs]
            assert all(isinstance(c, CDR) for c in mapped)
            now = datetime.now(UTC)
            cdr_rows = [cdr_row(c, now) for c in mapped]  # type: ignore[arg-type]
            raw_rows = [raw_row(e, c.call_id, now) for e, c in zip(envs, mapped, strict=True)]  # type: ignore[union-attr]
            msgs = [
                Message("cdr.normalized", 0, i, None, c.to_json())  # type: ignore[union-attr]
                for i, c in enumerate(mapped)
            ]
            if r == args.rounds - 1:
                await admin.execute("SELECT pg_stat_statements_reset()")
            await asyncio.sleep(0.2)
            for name in ("parser", "billing", "stats"):
                before = cluster_cpu(postmaster)
                for k in range(0, n, size):
                    if name == "parser":
                        await repo.store_batch(cdr_rows[k : k + size], raw_rows[k : k + size], [])
                    elif name == "billing":
                        await billing.handle_batch(msgs[k : k + size])
                    else:
                        await stats.handle_batch(msgs[k : k + size])
                await asyncio.sleep(0.15)  # let the WAL writer's share land in this part
                spent[name].append((cluster_cpu(postmaster) - before) / n * 1e6)
        line = []
        for name, values in spent.items():
            values.sort()
            line.append(f"{name} {values[0]:.0f} (median {values[len(values) // 2]:.0f})")
        print(
            "PostgreSQL µs CPU/CDR: "
            + " | ".join(line)
            + f"; sum of bests {sum(v[0] for v in spent.values()):.0f}"
        )
        rows = await admin.fetch(
            "SELECT calls, total_exec_time, rows, wal_bytes, "
            "shared_blks_hit + shared_blks_read AS blks, "
            "left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS q "
            "FROM pg_stat_statements WHERE query NOT ILIKE '%pg_stat_statements%' "
            "ORDER BY total_exec_time DESC LIMIT 12"
        )
        for row in rows:
            print(
                f"  {row['total_exec_time'] * 1000 / n:7.1f} µs/CDR exec  {row['calls']:4d} calls  "
                f"{int(row['wal_bytes']) / n:7.0f} WAL B/CDR  {row['blks'] / n:6.1f} blocks/CDR  "
                f"{row['q'][:60]}"
            )
        if args.sizes:
            sizes = await admin.fetch(
                "SELECT c.relname, pg_relation_size(c.oid) AS size FROM pg_class c "
                "JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = 'public' "
                "AND c.relkind IN ('r', 'i') AND pg_relation_size(c.oid) > 0 ORDER BY 2 DESC"
            )
            for row in sizes:
                print(f"  {row['size'] / (n * args.rounds):8.0f} B/CDR  {row['relname']}")
    finally:
        await engine.dispose()
        await admin.close()


async def run_sqlite(args: argparse.Namespace) -> None:
    """The same parts on SQLite (the all-in-one's store, ``cdrkit.db.create_engine``'s pragmas):
    the process's CPU (the event loop's thread and aiosqlite's) per CDR, best and median."""
    import tempfile

    from sqlalchemy import text

    root = Path(tempfile.mkdtemp(prefix="store-cpu-"))
    engine = create_engine(f"sqlite+aiosqlite:///{root / 'cdrflow.sqlite3'}")
    try:
        await migrate(engine, "cdr_parser.migrations", "alembic_version_parser")
        await migrate(engine, "cdr_billing.migrations", "alembic_version_billing")
        await migrate(engine, "cdr_stats.migrations", "alembic_version_stats")
        async with engine.begin() as conn:
            for sql in args.ddl:
                await conn.execute(text(sql))
        sessions = session_factory(engine)
        repo, billing, stats = await _services(sessions, "sqlite")
        n, size = args.n, args.size
        spent: dict[str, list[float]] = {"parser": [], "billing": [], "stats": []}
        for _ in range(args.rounds):
            envs = [RawEnvelope.from_json(m) for m in envelopes(n)]
            mapped = [outcome_of(e, None, 1e9) for e in envs]
            now = datetime.now(UTC)
            cdr_rows = [cdr_row(c, now) for c in mapped]  # type: ignore[arg-type]
            raw_rows = [raw_row(e, c.call_id, now) for e, c in zip(envs, mapped, strict=True)]  # type: ignore[union-attr]
            msgs = [
                Message("cdr.normalized", 0, i, None, c.to_json())  # type: ignore[union-attr]
                for i, c in enumerate(mapped)
            ]
            for name in ("parser", "billing", "stats"):
                before = time.process_time()
                for k in range(0, n, size):
                    if name == "parser":
                        await repo.store_batch(cdr_rows[k : k + size], raw_rows[k : k + size], [])
                    elif name == "billing":
                        await billing.handle_batch(msgs[k : k + size])
                    else:
                        await stats.handle_batch(msgs[k : k + size])
                spent[name].append((time.process_time() - before) / n * 1e6)
        line = []
        for name, values in spent.items():
            values.sort()
            line.append(f"{name} {values[0]:.0f} (median {values[len(values) // 2]:.0f})")
        print("SQLite, process µs CPU/CDR: " + " | ".join(line))
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=130)
    parser.add_argument("--n", type=int, default=1560)
    parser.add_argument("--ddl", action="append", default=[])
    parser.add_argument("--sizes", action="store_true")
    parser.add_argument("--collate", help="the database's LC_COLLATE (default: the cluster's)")
    parser.add_argument("--explain", help="copy the server log (auto_explain plans) here")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead (the all-in-one)")
    args = parser.parse_args()
    if args.sqlite:
        asyncio.run(run_sqlite(args))
        return
    with PrivateCluster() as pg:
        conf = pg.data / "postgresql.auto.conf"
        with conf.open("a") as f:
            f.write("shared_preload_libraries = 'pg_stat_statements'\n")
            f.write("pg_stat_statements.track_utility = off\n")
        pg.restart()
        if args.collate:
            # a database of another collation (the cluster's is the environment's)
            async def create() -> None:
                conn = await asyncpg.connect(pg.admin_dsn())
                await conn.execute(
                    f"CREATE DATABASE store_cpu TEMPLATE template0 LC_COLLATE '{args.collate}'"
                )
                await conn.close()

            asyncio.run(create())
            url = pg.url("store_cpu")
        else:
            url = pg.create_database("store_cpu")
        asyncio.run(run(pg, url, args))
        if args.explain:
            Path(args.explain).write_text(pg.log.read_text(errors="replace"))


if __name__ == "__main__":
    main()

"""Billing's and stats' ``handle_batch`` on PostgreSQL, in process: client CPU and database
statements per batch, by batch size (issue 15, sixth round, "Billing and stats around the
handler (h6sinks)" in docs/performance.md). Not part of ``make bench``.

A fresh database on the machine's PostgreSQL (``cdrkit.testing.postgres``), both services'
migrations, the services built as their apps build them, a producer that only collects what it
is given (no broker). The e2e bench's three fixtures mapped to normalised CDRs with fresh uuids
each round, fed in batches of ``sizes`` (the e2e run's ~15-20 at its rate, and 130 behind).
Per size: the best and the median of ``rounds`` of ``time.thread_time`` (the main thread: asyncpg
has no threads) per CDR, and the statements sent per batch (asyncpg's ``execute`` and
``_execute``, the pool's pre-ping included). The difference between sizes is the per-batch cost.

``.venv/bin/python -m bench.sinks_cpu [rounds] [size ...]``
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

import asyncpg.connection

from bench.consumers_cpu import envelopes
from cdr_billing.repository import BillingRepository
from cdr_billing.service import BillingService
from cdr_billing.settings import BillingSettings
from cdr_parser.outcomes import outcome_of
from cdr_stats.plugins import PluginSet
from cdr_stats.repository import StatsRepository
from cdr_stats.service import StatsService
from cdr_stats.settings import StatsSettings
from cdrkit.bus import Message, Record
from cdrkit.db import create_engine, migrate, session_factory
from cdrkit.testing.postgres import create_database, drop_database
from cdrmodel import CDR, RawEnvelope

N = 1560
statements = 0


def _count(method: Any) -> Any:
    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        global statements  # noqa: PLW0603
        statements += 1
        return await method(self, *args, **kwargs)

    return counted


asyncpg.connection.Connection.execute = _count(asyncpg.connection.Connection.execute)  # type: ignore[method-assign]
asyncpg.connection.Connection._execute = _count(asyncpg.connection.Connection._execute)  # type: ignore[method-assign]


class Collect:
    def __init__(self) -> None:
        self.sent: list[Record] = []

    async def send_many(self, topic: str, records: Sequence[Record]) -> None:
        self.sent.extend(records)

    async def send(self, topic: str, value: bytes, *, key: bytes | None = None, headers=()) -> None:  # type: ignore[no-untyped-def]
        self.sent.append(Record(value=value, key=key))


def normalised() -> list[bytes]:
    out = []
    for env in envelopes(N):
        cdr = outcome_of(RawEnvelope.from_json(env), None, 1e9)
        assert isinstance(cdr, CDR)
        out.append(cdr.to_json())
    return out


async def run(url: str, rounds: int, sizes: list[int]) -> None:
    engine = create_engine(url)
    try:
        await migrate(engine, "cdr_billing.migrations", "alembic_version_billing")
        await migrate(engine, "cdr_stats.migrations", "alembic_version_stats")
        sessions = session_factory(engine)
        bsettings = BillingSettings()
        billing = BillingService(bsettings, BillingRepository(sessions, "postgresql"), Collect())  # type: ignore[arg-type]
        await billing.ensure_default_tariff()
        await billing.refresh_tariffs()
        ssettings = StatsSettings()
        stats = StatsService(
            ssettings, StatsRepository(sessions, "postgresql"), PluginSet.load(ssettings)
        )
        for name, handle in (("billing", billing.handle_batch), ("stats", stats.handle_batch)):
            for size in sizes:
                spent, per_batch = [], 0.0
                for _ in range(rounds):
                    values = normalised()
                    msgs = [Message("cdr.normalized", 0, i, None, v) for i, v in enumerate(values)]
                    global statements  # noqa: PLW0603
                    statements = 0
                    started = time.thread_time()
                    for k in range(0, N, size):
                        await handle(msgs[k : k + size])
                    spent.append((time.thread_time() - started) / N * 1e6)
                    per_batch = statements / -(-N // size)
                spent.sort()
                print(
                    f"{name} batches of {size}: {spent[0]:.1f} µs/CDR "
                    f"(median {spent[len(spent) // 2]:.1f}), {per_batch:.1f} statements a batch",
                    flush=True,
                )
    finally:
        await engine.dispose()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    db = create_database("cdrflow_sinks_cpu")
    try:
        asyncio.run(run(db, args[0] if args else 5, args[1:] or [17, 130]))
    finally:
        drop_database(db)

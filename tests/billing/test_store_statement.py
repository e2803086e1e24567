"""Billing's one store statement on PostgreSQL (``_StoreStatement``) against the statement it
replaced (issue 15, ninth round, h9sinks): the same rows stored, the same call ids returned, over
random sequences of batches (new calls priced or not, redelivered calls, calls priced late).

The old statement cleared ``unpriced_reason`` with ``WHERE call_id IN (SELECT call_id FROM
new_charges)``, which PostgreSQL ran as a scan of the whole ``billing_calls`` in every batch; the
new one reads only the calls whose charge is new and that the statement did not store itself, and
nothing at all when there are none (almost every batch)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from cdr_billing.repository import BillingRepository, _StoreStatement
from cdrkit.db import create_engine, migrate, session_factory

# The statement before h9sinks, verbatim but for its priced_late CTE's WHERE (the oracle).
_OLD_PRICED_LATE = (
    "priced_late AS (UPDATE billing_calls SET unpriced_reason = NULL "
    "WHERE call_id IN (SELECT call_id FROM new_charges) AND unpriced_reason IS NOT NULL) "
    "SELECT call_id FROM new_charges"
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _old_sql() -> str:
    new = _StoreStatement().sql
    head = new[: new.index("late AS (")]
    return head + _OLD_PRICED_LATE


def _call(call_id: str, reason: str | None) -> dict[str, Any]:
    start = NOW - timedelta(minutes=5)
    return {
        "call_id": call_id,
        "subscriber": "acme",
        "source": "freeswitch",
        "caller_number": "1000",
        "callee_number": "2000",
        "account": "acme",
        "start_time": start,
        "answer_time": start,
        "end_time": NOW,
        "duration_s": 300,
        "billsec_s": 300,
        "disposition": "answered",
        "consumed_at": NOW,
        "unpriced_reason": reason,
    }


def _charge(call_id: str, amount: str) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "subscriber": "acme",
        "outcome": "priced",
        "destination": "2000",
        "start_time": NOW - timedelta(minutes=5),
        "end_time": NOW,
        "billed_s": 300,
        "amount": Decimal(amount),
        "currency": "EUR",
        "tariff_name": "default",
        "tariff_version": 1,
        "explanation": json.dumps({"amount": amount}),
        "rated_at": NOW,
    }


def _batches(rng: random.Random) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Batches as billing stores them: calls (priced or with a reason), charges for some;
    a call may come again (redelivery: its call row again, maybe now with a charge)."""
    out = []
    ids = [f"c{i}" for i in range(60)]
    for _ in range(rng.randrange(4, 12)):
        picked = rng.sample(ids, rng.randrange(0, 15))
        calls, charges = [], []
        for call_id in picked:
            priced = rng.random() < 0.6
            calls.append(_call(call_id, None if priced else rng.choice(["no tariff", "no end"])))
            if priced or rng.random() < 0.1:
                charges.append(_charge(call_id, f"{rng.randrange(0, 999)}.{rng.randrange(99)}"))
        # now and then a charge for a call not in the batch's calls (rerating: stored before)
        if rng.random() < 0.4:
            charges.append(_charge(rng.choice(ids), "1.5"))
        unique: dict[str, dict[str, Any]] = {c["call_id"]: c for c in charges}
        out.append((calls, list(unique.values())))
    return out


async def _contents(conn: asyncpg.Connection) -> tuple[list[Any], list[Any]]:
    calls = await conn.fetch("SELECT * FROM billing_calls ORDER BY call_id")
    charges = await conn.fetch(
        "SELECT call_id, subscriber, outcome, amount, explanation::text FROM charges "
        "ORDER BY call_id"
    )
    return [tuple(r) for r in calls], [tuple(r) for r in charges]


async def test_the_store_statement_stores_what_the_old_one_did(fresh_pg_url: str) -> None:
    engine = create_engine(fresh_pg_url)
    await migrate(engine, "cdr_billing.migrations", "alembic_version_billing")
    repo = BillingRepository(session_factory(engine), "postgresql")
    statement = repo._store_pg
    conn = await asyncpg.connect(fresh_pg_url.replace("postgresql+asyncpg", "postgresql"))
    late_cleared = 0
    try:
        for seed in range(40):
            rng = random.Random(seed)
            batches = _batches(rng)
            got: list[tuple[Any, ...]] = []
            for sql in (statement.sql, _old_sql()):
                await conn.execute("TRUNCATE billing_calls, charges, adjustments")
                returned = []
                for calls, charges in batches:
                    args = [
                        *statement.calls.arrays(engine.dialect, calls),
                        *statement.charges.arrays(engine.dialect, charges),
                    ]
                    returned.append(sorted(r[0] for r in await conn.fetch(sql, *args)))
                got.append((returned, await _contents(conn)))
            assert got[0] == got[1], seed
            first: dict[str, str | None] = {}
            for calls, _ in batches:
                for c in calls:
                    first.setdefault(c["call_id"], c["unpriced_reason"])
            stored_calls = got[0][1][0]
            late_cleared += sum(1 for r in stored_calls if first[r[0]] and r[-1] is None)
    finally:
        await conn.close()
        await engine.dispose()
    assert late_cleared > 50  # the sequences do price calls late


async def test_a_call_priced_late_loses_its_reason_and_only_it(fresh_pg_url: str) -> None:
    engine = create_engine(fresh_pg_url)
    await migrate(engine, "cdr_billing.migrations", "alembic_version_billing")
    repo = BillingRepository(session_factory(engine), "postgresql")
    try:
        assert await repo.store(
            [_call("a", "no tariff"), _call("b", None)], [_charge("b", "1")]
        ) == {"b"}
        new = await repo.store([_call("a", "no tariff"), _call("c", "no end")], [_charge("a", "2")])
        assert new == {"a"}
        reasons = {r.call_id: r.unpriced_reason for r in [await repo.get_call(i) for i in "abc"]}
        assert reasons == {"a": None, "b": None, "c": "no end"}
    finally:
        await engine.dispose()


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", []):
        out += _nodes(child)
    return out


async def test_a_batch_of_new_calls_reads_no_stored_call(fresh_pg_url: str) -> None:
    """The statement that stores new calls (nothing priced late) reads none of the calls stored
    before: the old one scanned all of them in every batch."""
    engine = create_engine(fresh_pg_url)
    await migrate(engine, "cdr_billing.migrations", "alembic_version_billing")
    statement = _StoreStatement()
    conn = await asyncpg.connect(fresh_pg_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for k in range(0, 3000, 500):
            calls = [_call(f"s{i}", None) for i in range(k, k + 500)]
            charges = [_charge(f"s{i}", "1") for i in range(k, k + 500)]
            args = [
                *statement.calls.arrays(engine.dialect, calls),
                *statement.charges.arrays(engine.dialect, charges),
            ]
            await conn.fetch(statement.sql, *args)
        calls = [_call(f"n{i}", None) for i in range(100)]
        charges = [_charge(f"n{i}", "1") for i in range(100)]
        args = [
            *statement.calls.arrays(engine.dialect, calls),
            *statement.charges.arrays(engine.dialect, charges),
        ]
        plan = json.loads(
            await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement.sql}", *args)
        )[0]["Plan"]
    finally:
        await conn.close()
        await engine.dispose()
    reads = [
        n
        for n in _nodes(plan)
        if n.get("Relation Name") == "billing_calls"
        and n["Node Type"] != "ModifyTable"
        and n.get("Actual Loops")
    ]
    assert reads == [], reads

"""SQL of the stats service (PostgreSQL and SQLite)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cdr_stats.aggregate import Row
from cdr_stats.models import alerts, buckets, seen
from cdr_stats.plugins import Alert
from cdrkit.db import driver_connection, dumps_json, sqlite_values

# PostgreSQL: one statement carries the whole batch (arrays unnested server-side), sent on
# asyncpg directly (inside the session's transaction): SQLAlchemy's parameter and row
# processing of thousands of values per batch cost more than the statements themselves.
_PG_SEEN = (
    "INSERT INTO stats_seen (call_id, bucket) "
    "SELECT * FROM unnest($1::text[], $2::bigint[]) "
    "ON CONFLICT (call_id) DO NOTHING RETURNING call_id"
)
_PG_UPSERT = (
    "WITH up AS (INSERT INTO stats_buckets AS t "
    "(dim, bucket, value, metric, count, sum, squares, min, max) "
    "SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], "
    "$6::float8[], $7::float8[], $8::float8[], $9::float8[]) "
    "ON CONFLICT (dim, bucket, value, metric) DO UPDATE SET "
    "count = t.count + excluded.count, sum = t.sum + excluded.sum, "
    "squares = t.squares + excluded.squares, "
    "min = LEAST(t.min, excluded.min), max = GREATEST(t.max, excluded.max) "
    "RETURNING dim, bucket, value, metric, count, sum, squares, min, max) "
    "SELECT * FROM up WHERE dim = ANY($10::text[])"
)
_PG_ALERTS = (
    "INSERT INTO stats_alerts (dedup_key, kind, text, labels, bucket, created_at) "
    "SELECT k, kind, text, labels::json, bucket, created_at FROM unnest($1::text[], $2::text[], "
    "$3::text[], $4::text[], $5::bigint[], $6::timestamptz[]) "
    "AS u(k, kind, text, labels, bucket, created_at) "
    "ON CONFLICT (dedup_key) DO NOTHING "
    "RETURNING id, kind, text, labels, bucket, created_at"
)
_PG_READ = (
    "SELECT count, sum, squares, min, max, metric, bucket, value FROM stats_buckets "
    "WHERE dim = $1 AND bucket >= $2 AND bucket < $3"
)
_PG_READ_ORDER = " ORDER BY bucket, value, metric"
_COLUMNS = ("dim", "bucket", "value", "metric", "count", "sum", "squares", "min", "max")
# SQLite (the all-in-one): the same statements as plain SQL with one VALUES tuple per row, sent
# with exec_driver_sql. SQLAlchemy compiled a multi-row .values() afresh for every batch (its
# row count varies, so the compiled cache never hit): ~400 µs of CPU per CDR on the batches
# of ``cdrflow run``.
_SQLITE_SEEN = (
    "INSERT INTO stats_seen (call_id, bucket) VALUES {values} "
    "ON CONFLICT (call_id) DO NOTHING RETURNING call_id"
)
_SQLITE_UPSERT = (
    "INSERT INTO stats_buckets (dim, bucket, value, metric, count, sum, squares, min, max) "
    "VALUES {values} ON CONFLICT (dim, bucket, value, metric) DO UPDATE SET "
    "count = (stats_buckets.count + excluded.count), "
    "sum = (stats_buckets.sum + excluded.sum), "
    "squares = (stats_buckets.squares + excluded.squares), "
    # SQLite's min()/max() return NULL if any argument is NULL.
    "min = min(coalesce(stats_buckets.min, excluded.min), "
    "coalesce(excluded.min, stats_buckets.min)), "
    "max = max(coalesce(stats_buckets.max, excluded.max), "
    "coalesce(excluded.max, stats_buckets.max)) "
    "RETURNING dim, bucket, value, metric, count, sum, squares, min, max"
)


@dataclass
class AlertRow:
    id: int
    kind: str
    text: str
    labels: dict[str, str]
    bucket: int
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "text": self.text,
            "labels": self.labels,
            "bucket": self.bucket,
            "created_at": self.created_at.isoformat(),
        }


# What an alert row is read as (AlertRow), by the insert's RETURNING and by the listing.
_ALERT_COLUMNS = (
    alerts.c.id,
    alerts.c.kind,
    alerts.c.text,
    alerts.c.labels,
    alerts.c.bucket,
    alerts.c.created_at,
)


class StatsRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], dialect: str) -> None:
        self.sessions = sessions
        self.dialect = dialect
        ins: Any = postgresql.insert(alerts) if dialect == "postgresql" else sqlite.insert(alerts)
        self._insert_alerts = ins.on_conflict_do_nothing(index_elements=["dedup_key"]).returning(
            *_ALERT_COLUMNS
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose statements are one transaction: a consumed batch's.

        On PostgreSQL the batch's statements go to asyncpg itself (``driver_connection``), and
        SQLAlchemy's asyncpg adapter sends its BEGIN only before a statement of its own: under
        ``sessions.begin()`` alone each of them committed by itself (the call ids could be
        stored as seen without their counts). Here asyncpg's own transaction holds them; the
        pool's checkout and return are unchanged."""
        if self.dialect != "postgresql":
            async with self.sessions.begin() as session:
                yield session
            return
        async with (
            self.sessions() as session,
            (await driver_connection(session)).transaction(),
        ):
            yield session

    async def first_seen(self, session: AsyncSession, calls: dict[str, int]) -> set[str]:
        """Insert the call ids (→ bucket); return those not seen before (the ones to count)."""
        if not calls:
            return set()
        ids = sorted(calls)
        if self.dialect == "postgresql":
            rows = await (await driver_connection(session)).fetch(
                _PG_SEEN, ids, [calls[i] for i in ids]
            )
            return {r[0] for r in rows}
        conn = await session.connection()
        new = await sqlite_values(conn, _SQLITE_SEEN, [(i, calls[i]) for i in ids])
        return {r[0] for r in new}

    async def add_deltas(
        self, session: AsyncSession, rows: Sequence[Row], returned: Sequence[str]
    ) -> list[Any]:
        """Add the delta rows to the stored moments; return the merged rows (all instances) of
        the dimensions in ``returned`` (reading back every account's rows would cost more than
        the upsert)."""
        if not rows:
            return []
        if self.dialect == "postgresql":
            columns = list(zip(*rows, strict=True))  # 9 columns
            return list(
                await (await driver_connection(session)).fetch(_PG_UPSERT, *columns, returned)
            )
        merged = await sqlite_values(await session.connection(), _SQLITE_UPSERT, rows)
        return [r for r in merged if r[0] in returned]

    async def add_alerts(
        self, session: AsyncSession, found: Sequence[Alert], now: datetime
    ) -> list[AlertRow]:
        """Store the alerts not stored before (dedup key); return the new ones."""
        if not found:
            return []
        unique = {a.dedup_key: a for a in found}
        values = [
            {
                "dedup_key": key,
                "kind": a.kind,
                "text": a.text,
                "labels": a.labels,
                "bucket": a.bucket,
                "created_at": now,
            }
            for key, a in sorted(unique.items())
        ]
        if self.dialect == "postgresql":
            # Plain asyncpg, inside the batch's transaction (``transaction``); the labels as
            # the engine's JSON text, as SQLAlchemy's JSON type sends them.
            columns = [list(c) for c in zip(*(v.values() for v in values), strict=True)]
            columns[3] = [dumps_json(labels) for labels in columns[3]]
            returned = await (await driver_connection(session)).fetch(_PG_ALERTS, *columns)
            # (the labels come back decoded: the dialect gave asyncpg a JSON codec)
            return sorted((AlertRow(*r) for r in returned), key=lambda a: a.id)
        # One statement compiled once (executemany: SQLAlchemy's insertmanyvalues batches the
        # rows into multi-row INSERTs); a .values(list) was compiled afresh for every batch.
        stmt = self._insert_alerts
        rows = (await session.execute(stmt, values)).all()
        return sorted((AlertRow(*r) for r in rows), key=lambda a: a.id)

    async def read(
        self, dim: str, since: int, until: int, metrics: Sequence[str] | None
    ) -> Sequence[Any]:
        """Rows ``(count, sum, squares, min, max, metric, bucket, value)`` of one dimension with
        ``since <= bucket < until``, in (bucket, value, metric) order; ``metrics``: names, or
        prefixes ending in ``:`` (``sip:``), to read only those."""
        names = prefixes = None
        if metrics is not None:
            names = [m for m in metrics if not m.endswith(":")]
            prefixes = [m for m in metrics if m.endswith(":")]
        if self.dialect == "postgresql":
            # The primary key (dim, bucket, value, metric) serves the range and the order.
            sql = _PG_READ
            args: list[Any] = [dim, since, until]
            if names is not None and prefixes is not None:
                tests = ["metric = ANY($4::text[])"]
                args.append(names)
                for prefix in prefixes:
                    args.append(prefix)
                    tests.append(f"starts_with(metric, ${len(args)})")
                sql += f" AND ({' OR '.join(tests)})"
            async with self.sessions() as session:
                rows: Sequence[Any] = await (await driver_connection(session)).fetch(
                    sql + _PG_READ_ORDER, *args
                )
                return rows
        t = buckets.c
        query = (
            select(t.count, t.sum, t.squares, t.min, t.max, t.metric, t.bucket, t.value)
            .where(t.dim == dim, t.bucket >= since, t.bucket < until)
            .order_by(t.bucket, t.value, t.metric)
        )
        if names is not None and prefixes is not None:
            conds: list[ColumnElement[bool]] = [t.metric.in_(names)] if names else []
            conds += [t.metric.startswith(m, autoescape=True) for m in prefixes]
            query = query.where(or_(*conds))
        async with self.sessions() as session:
            return (await session.execute(query)).all()

    async def list_alerts(
        self, *, since: datetime | None, kind: str | None, limit: int
    ) -> list[AlertRow]:
        query = select(*_ALERT_COLUMNS).order_by(alerts.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(alerts.c.created_at >= since)
        if kind is not None:
            query = query.where(alerts.c.kind == kind)
        async with self.sessions() as session:
            return [AlertRow(*r) for r in (await session.execute(query)).all()]

    async def delete_alerts(self, before: datetime | None) -> int:
        stmt = delete(alerts)
        if before is not None:
            stmt = stmt.where(alerts.c.created_at < before)
        async with self.sessions.begin() as session:
            result = await session.execute(stmt)
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def prune(self, bucket_before: int, alerts_before: datetime) -> tuple[int, int]:
        """Delete buckets (and their calls' dedup keys) older than the retention; old alerts."""
        async with self.sessions.begin() as session:
            gone = await session.execute(delete(buckets).where(buckets.c.bucket < bucket_before))
            await session.execute(delete(seen).where(seen.c.bucket < bucket_before))
            old = await session.execute(delete(alerts).where(alerts.c.created_at < alerts_before))
        return int(gone.rowcount or 0), int(old.rowcount or 0)  # type: ignore[attr-defined]

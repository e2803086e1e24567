"""SQL for billing. Calls and charges are written idempotently on the call id; charges are never
updated (the database refuses it too, see the migration)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    MetaData,
    Row,
    Table,
    and_,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.types import TypeDecorator

from cdr_billing.models import (
    adjustments,
    billing_calls,
    charges,
    tariff_assignments,
    tariff_destinations,
    tariffs,
)
from cdr_billing.tariff import Band, Destination, Tariff
from cdrkit.db import ColumnArrays, driver_connection, insert_ignore, sqlite_values
from cdrmodel.errors import CdrflowError

DEST_CHUNK = 5000


class _JSONText(TypeDecorator[Any]):
    """A JSON column whose value may be its JSON text already (a ``str``: bound as it is, the
    text the column's own processor would have written); any other value goes through the
    JSON type's own bind processor (the engine's serializer). Billing's charge rows carry the
    explanation as json.dumps's text (``Rated.explanation_json``); an explanation is always
    an object, never a JSON string, so a ``str`` there is never a value to encode."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        inner = JSON().dialect_impl(dialect).bind_processor(dialect)

        def process(value: Any) -> Any:
            if type(value) is str:
                return value
            return value if inner is None else inner(value)

        return process


def _binding(table: Table) -> Table:
    """A copy of ``table`` for binding rows only (``ColumnArrays.rows``/``arrays``: the same
    column names, order and types) whose JSON columns take their text as it is
    (``_JSONText``). The statements' text is made from ``table`` itself."""
    return Table(
        table.name,
        MetaData(),
        *(
            Column(c.name, _JSONText() if isinstance(c.type, JSON) else c.type)
            for c in table.columns
        ),
    )


class _InsertIgnore:
    """``INSERT … ON CONFLICT (call_id) DO NOTHING RETURNING call_id`` of many rows as one plain
    statement on SQLite, one VALUES tuple per row, the values through the columns' own bind
    processors (PostgreSQL: ``_StoreStatement``). SQLAlchemy's executemany cost more per row
    than the database did (~100 µs per CDR for billing's two inserts, batches of 30)."""

    def __init__(self, table: Table) -> None:
        self.columns = ColumnArrays(_binding(table))
        names = ", ".join(self.columns.names)
        self.sqlite_sql = (
            f"INSERT INTO {table.name} ({names}) VALUES {{values}} "
            "ON CONFLICT (call_id) DO NOTHING RETURNING call_id"
        )

    async def __call__(self, session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Insert ``rows``; return the call ids of the rows inserted (not there before)."""
        if not rows:
            return set()
        conn = await session.connection()
        new = await sqlite_values(conn, self.sqlite_sql, self.columns.rows(conn.dialect, rows))
        return {r[0] for r in new}


class _StoreStatement:
    """PostgreSQL: a batch's calls and charges as ONE statement on asyncpg (both tables' columns
    as arrays, ``ColumnArrays``/``unnest``, the values through the columns' own bind
    processors), so that it is atomic without a BEGIN and a COMMIT of its own and costs one
    round trip (issue 15, sixth round). Each insert is ``ON CONFLICT (call_id) DO NOTHING``; the
    statement returns the call ids whose charge is new. A call stored earlier without a charge
    (unpriced) that gets one now has its ``unpriced_reason`` cleared by the same statement: the
    UPDATE sees the rows as they were before the statement, so it never touches a call this
    very statement stored (stored with its outcome already); it looks up only the calls whose
    charge is new and that this statement did not store (``EXCEPT``), by the primary key
    (``= ANY(ARRAY(…))``): written as ``IN (SELECT call_id FROM new_charges)`` PostgreSQL
    scanned the whole of ``billing_calls`` for unpriced rows in every batch, a cost that grew
    with the table (issue 15, ninth round, h9sinks). Almost every batch has none: nothing is
    read."""

    def __init__(self) -> None:
        self.calls = ColumnArrays(billing_calls)
        self.charges = ColumnArrays(_binding(charges))  # the explanation's text as it is
        calls_from, calls_picks = self.calls.unnest(1)
        charges_from, charges_picks = ColumnArrays(charges).unnest(1 + len(self.calls.names))
        self.sql = (
            f"WITH new_calls AS (INSERT INTO billing_calls ({', '.join(self.calls.names)}) "
            f"SELECT {calls_picks} FROM {calls_from} "
            "ON CONFLICT (call_id) DO NOTHING RETURNING call_id), "
            f"new_charges AS (INSERT INTO charges ({', '.join(self.charges.names)}) "
            f"SELECT {charges_picks} FROM {charges_from} "
            "ON CONFLICT (call_id) DO NOTHING RETURNING call_id), "
            "late AS (SELECT call_id FROM new_charges EXCEPT SELECT call_id FROM new_calls), "
            "priced_late AS (UPDATE billing_calls SET unpriced_reason = NULL "
            "WHERE EXISTS (SELECT FROM late) AND call_id = ANY(ARRAY(SELECT call_id FROM late)) "
            "AND unpriced_reason IS NOT NULL) "
            "SELECT call_id FROM new_charges"
        )

    async def __call__(
        self,
        session: AsyncSession,
        call_rows: Sequence[dict[str, Any]],
        charge_rows: Sequence[dict[str, Any]],
    ) -> set[str]:
        conn = await session.connection()
        args = [
            *self.calls.arrays(conn.dialect, call_rows),
            *self.charges.arrays(conn.dialect, charge_rows),
        ]
        rows = await (await driver_connection(session)).fetch(self.sql, *args)
        return {r[0] for r in rows}


class VersionConflict(CdrflowError):
    code = "version_conflict"
    status = 409


def _tariff_row(t: Tariff, created_at: datetime) -> dict[str, Any]:
    return {
        "name": t.name,
        "version": t.version,
        "effective_from": t.effective_from,
        "currency": t.currency,
        "timezone": t.timezone,
        "standing_charge": t.standing_charge,
        "minimum_charge": t.minimum_charge,
        "unit_s": t.unit_s,
        "first_increment_s": t.first_increment_s,
        "next_increment_s": t.next_increment_s,
        "rounding": t.rounding,
        "bands": [b.as_dict() for b in t.bands],
        "created_at": created_at,
        "rules": t.rules(),
    }


def _dest_rows(tariff_id: int, t: Tariff) -> list[dict[str, Any]]:
    return [
        {
            "tariff_id": tariff_id,
            "prefix": d.prefix,
            "name": d.name,
            "prices": {k: str(v) for k, v in d.prices.items()},
            "standing_charge": d.standing_charge,
        }
        for d in t.destinations
    ]


class BillingRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], dialect: str) -> None:
        self.sessions = sessions
        self.dialect = dialect
        self._insert_tariff_ignore = insert_ignore(tariffs, dialect, ["name", "version"])
        self._insert_calls = _InsertIgnore(billing_calls)
        self._insert_charges = _InsertIgnore(charges)
        self._store_pg = _StoreStatement()

    # -- tariffs -------------------------------------------------------------------------------

    async def max_tariff_id(self) -> int:
        async with self.sessions() as session:
            return int(await session.scalar(select(func.max(tariffs.c.id))) or 0)

    @asynccontextmanager
    async def _using(self, session: AsyncSession | None) -> AsyncIterator[AsyncSession]:
        """``session`` when given (a batch's one transaction), else a session of its own."""
        if session is not None:
            yield session
            return
        async with self.sessions() as own:
            yield own

    def transaction(self) -> Any:
        """One session and transaction for a whole consumed batch (``async with``)."""
        return self.sessions.begin()

    async def _plain(self, session: AsyncSession, sql: str, *args: Any) -> list[Any]:
        """Rows of a plain statement (``$n`` parameters; ``?`` on SQLite, the arguments of an
        ``ANY($n)`` spread in place) in ``session``: the batch's reads skip SQLAlchemy's
        statement machinery (a few hundred µs a statement, per batch)."""
        conn = await session.connection()
        if self.dialect == "postgresql":
            return list(await (await driver_connection(session)).fetch(sql, *args))
        params: list[Any] = []
        for n, arg in enumerate(args, 1):
            if isinstance(arg, list):
                sql = sql.replace(f"= ANY(${n})", f"IN ({', '.join('?' * len(arg))})")
                params += arg
            else:
                sql = sql.replace(f"${n}", "?")
                params.append(arg)
        return list((await conn.exec_driver_sql(sql, tuple(params))).all())

    async def tariff_ids(self, session: AsyncSession | None = None) -> set[int]:
        async with self._using(session) as s:
            return {r[0] for r in await self._plain(s, "SELECT id FROM tariffs")}

    async def batch_reads(
        self, subscribers: Iterable[str], session: AsyncSession
    ) -> tuple[set[int], dict[str, str]]:
        """What a consumed batch reads, in one statement (one round trip, issue 15 sixth
        round): the ids of every tariff version (``BillingService.refresh_tariffs``) and the
        tariff assigned to each of ``subscribers`` that has one."""
        rows = await self._plain(
            session,
            "SELECT id, NULL, NULL FROM tariffs UNION ALL "
            "SELECT NULL, subscriber, tariff_name FROM tariff_assignments "
            "WHERE subscriber = ANY($1)",
            list(set(subscribers)),
        )
        ids: set[int] = set()
        assigned: dict[str, str] = {}
        for tid, sub, name in rows:
            if tid is not None:
                ids.add(tid)
            else:
                assigned[sub] = name
        return ids, assigned

    async def load_tariffs(self, after_id: int = 0) -> list[Tariff]:
        """Every tariff version with an id above ``after_id``, destinations included."""
        async with self.sessions() as session:
            heads = (
                await session.execute(
                    select(tariffs).where(tariffs.c.id > after_id).order_by(tariffs.c.id)
                )
            ).all()
            if not heads:
                return []
            dests: dict[int, list[Destination]] = {h.id: [] for h in heads}
            result = await session.stream(
                select(
                    tariff_destinations.c.tariff_id,
                    tariff_destinations.c.prefix,
                    tariff_destinations.c.name,
                    tariff_destinations.c.prices,
                    tariff_destinations.c.standing_charge,
                ).where(tariff_destinations.c.tariff_id > after_id)
            )
            async for part in result.partitions(10_000):
                for tid, prefix, name, prices, standing in part:
                    bucket = dests.get(tid)
                    if bucket is not None:
                        bucket.append(
                            Destination(
                                prefix, name, {k: Decimal(v) for k, v in prices.items()}, standing
                            )
                        )
        return [
            Tariff(
                id=h.id,
                name=h.name,
                version=h.version,
                effective_from=h.effective_from,
                currency=h.currency,
                timezone=h.timezone,
                standing_charge=h.standing_charge,
                minimum_charge=h.minimum_charge,
                unit_s=h.unit_s,
                first_increment_s=h.first_increment_s,
                next_increment_s=h.next_increment_s,
                rounding=h.rounding,
                bands=[Band(b["name"], tuple(b["days"]), b["start"], b["end"]) for b in h.bands],
                destinations=dests[h.id],
                overnight=(h.rules or {}).get("overnight", "next_day"),
                extension_ranges=tuple((h.rules or {}).get("extension_ranges", ())),
                free_prefixes=tuple((h.rules or {}).get("free_prefixes", ())),
            )
            for h in heads
        ]

    async def insert_tariff(self, t: Tariff, now: datetime) -> int:
        """Store ``t`` as the next version of its name; return the version number."""
        async with self.sessions.begin() as session:
            current = await session.scalar(
                select(func.max(tariffs.c.version)).where(tariffs.c.name == t.name)
            )
            t.version = int(current or 0) + 1
            try:
                tid = await session.scalar(
                    insert(tariffs).values(_tariff_row(t, now)).returning(tariffs.c.id)
                )
            except IntegrityError as exc:
                raise VersionConflict(
                    f"another version of tariff {t.name!r} was created at the same time; retry"
                ) from exc
            assert tid is not None
            rows = _dest_rows(tid, t)
            for i in range(0, len(rows), DEST_CHUNK):
                await session.execute(insert(tariff_destinations), rows[i : i + DEST_CHUNK])
        return t.version

    async def ensure_tariff(self, t: Tariff, now: datetime) -> bool:
        """Create version ``t.version`` of ``t.name`` unless that name exists; True if created."""
        async with self.sessions.begin() as session:
            exists = await session.scalar(
                select(tariffs.c.id).where(tariffs.c.name == t.name).limit(1)
            )
            if exists is not None:
                return False
            result = await session.execute(
                self._insert_tariff_ignore.values(_tariff_row(t, now)).returning(tariffs.c.id)
            )
            tid = result.scalar()
            if tid is None:
                return False  # another replica created it first
            await session.execute(insert(tariff_destinations), _dest_rows(tid, t))
        return True

    async def destinations(self, name: str, version: int) -> list[Row[Any]]:
        async with self.sessions() as session:
            tid = select(tariffs.c.id).where(tariffs.c.name == name, tariffs.c.version == version)
            rows = await session.execute(
                select(tariff_destinations)
                .where(tariff_destinations.c.tariff_id == tid.scalar_subquery())
                .order_by(tariff_destinations.c.prefix)
            )
            return list(rows.all())

    # -- assignments ---------------------------------------------------------------------------

    async def assignments(
        self, subscribers: Iterable[str], session: AsyncSession | None = None
    ) -> dict[str, str]:
        subs = list(set(subscribers))
        if not subs:
            return {}
        async with self._using(session) as s:
            rows = await self._plain(
                s,
                "SELECT subscriber, tariff_name FROM tariff_assignments WHERE subscriber = ANY($1)",
                subs,
            )
            return {sub: name for sub, name in rows}

    async def get_assignment(self, subscriber: str) -> Row[Any] | None:
        async with self.sessions() as session:
            return (
                await session.execute(
                    select(tariff_assignments).where(tariff_assignments.c.subscriber == subscriber)
                )
            ).first()

    async def assign(self, subscriber: str, tariff_name: str, now: datetime) -> None:
        stmt: Any = (postgresql if self.dialect == "postgresql" else sqlite).insert(
            tariff_assignments
        )
        stmt = stmt.values(subscriber=subscriber, tariff_name=tariff_name, assigned_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=["subscriber"],
            set_={"tariff_name": stmt.excluded.tariff_name, "assigned_at": now},
        )
        async with self.sessions.begin() as session:
            await session.execute(stmt)

    # -- calls and charges ---------------------------------------------------------------------

    async def store(
        self,
        call_rows: Sequence[dict[str, Any]],
        charge_rows: Sequence[dict[str, Any]],
        session: AsyncSession | None = None,
    ) -> set[str]:
        """One transaction (``session``'s when given): the consumed calls (first version wins)
        and their charges (a call charged already keeps its charge). Returns the call ids whose
        charge is new."""
        if session is None:
            async with self.sessions.begin() as own:
                return await self.store(call_rows, charge_rows, own)
        if self.dialect == "postgresql":
            if not call_rows and not charge_rows:
                return set()
            return await self._store_pg(session, call_rows, charge_rows)
        new_calls = await self._insert_calls(session, call_rows)
        inserted = await self._insert_charges(session, charge_rows)
        # A call stored before without a charge (unpriced) that has one now: forget its reason.
        # A call stored by this very batch was stored with its outcome already.
        priced_late = inserted - new_calls
        if priced_late:
            await session.execute(
                update(billing_calls)
                .where(
                    billing_calls.c.call_id.in_(priced_late),
                    billing_calls.c.unpriced_reason.is_not(None),
                )
                .values(unpriced_reason=None)
            )
        return inserted

    async def set_unpriced(self, reasons: dict[str, str]) -> None:
        async with self.sessions.begin() as session:
            for call_id, reason in reasons.items():
                await session.execute(
                    update(billing_calls)
                    .where(billing_calls.c.call_id == call_id)
                    .values(unpriced_reason=reason)
                )

    async def charges_for(
        self, call_ids: Iterable[str], session: AsyncSession | None = None
    ) -> list[Row[Any]]:
        ids = list(call_ids)
        if not ids:
            return []
        async with self._using(session) as s:
            rows = await s.execute(select(charges).where(charges.c.call_id.in_(ids)))
            return list(rows.all())

    async def list_charges(
        self,
        subscriber: str,
        since: datetime | None,
        until: datetime | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Row[Any]]:
        """One subscriber's charges by (end_time, call_id) descending: an index range read of
        ``ix_charges_subscriber_end_time_call_id``."""
        conds = [charges.c.subscriber == subscriber]
        if since is not None:
            conds.append(charges.c.end_time >= since)
        if until is not None:
            conds.append(charges.c.end_time < until)
        if after is not None:
            conds.append(tuple_(charges.c.end_time, charges.c.call_id) < tuple_(*after))
        query = (
            select(charges)
            .where(and_(*conds))
            .order_by(charges.c.end_time.desc(), charges.c.call_id.desc())
            .limit(limit)
        )
        async with self.sessions() as session:
            return list((await session.execute(query)).all())

    async def get_charge(self, call_id: str) -> Row[Any] | None:
        async with self.sessions() as session:
            return (
                await session.execute(select(charges).where(charges.c.call_id == call_id))
            ).first()

    async def get_call(self, call_id: str) -> Row[Any] | None:
        async with self.sessions() as session:
            return (
                await session.execute(
                    select(billing_calls).where(billing_calls.c.call_id == call_id)
                )
            ).first()

    async def unpriced_calls(
        self, since: datetime, until: datetime, limit: int, after: str = ""
    ) -> list[Row[Any]]:
        """Calls that started in ``[since, until)`` and have no charge, by call id."""
        query = (
            select(billing_calls)
            .outerjoin(charges, charges.c.call_id == billing_calls.c.call_id)
            .where(
                charges.c.call_id.is_(None),
                billing_calls.c.start_time >= since,
                billing_calls.c.start_time < until,
                billing_calls.c.call_id > after,
            )
            .order_by(billing_calls.c.call_id)
            .limit(limit)
        )
        async with self.sessions() as session:
            return list((await session.execute(query)).all())

    # -- adjustments and bills -----------------------------------------------------------------

    async def add_adjustment(
        self, row: dict[str, Any], check: Callable[[Decimal, list[Decimal]], None]
    ) -> int:
        """Insert an adjustment and call ``check(charge amount, every adjustment amount)`` in the
        same transaction; what ``check`` raises rolls the insert back. Concurrent adjustments of
        one charge are serialised, so two cannot pass the check each on its own: PostgreSQL locks
        the charge row first; SQLite takes its write lock with the insert, before any read."""
        async with self.sessions.begin() as session:
            if self.dialect == "postgresql":
                await session.execute(
                    select(charges.c.call_id)
                    .where(charges.c.call_id == row["call_id"])
                    .with_for_update()
                )
            new_id = await session.scalar(
                insert(adjustments).values(row).returning(adjustments.c.id)
            )
            assert new_id is not None
            amount = await session.scalar(
                select(charges.c.amount).where(charges.c.call_id == row["call_id"])
            )
            assert amount is not None
            amounts = await session.scalars(
                select(adjustments.c.amount).where(adjustments.c.call_id == row["call_id"])
            )
            check(amount, list(amounts))
            return int(new_id)

    async def adjustments_for_call(self, call_id: str) -> list[Row[Any]]:
        async with self.sessions() as session:
            rows = await session.execute(
                select(adjustments)
                .where(adjustments.c.call_id == call_id)
                .order_by(adjustments.c.id)
            )
            return list(rows.all())

    async def bill_rows(
        self, subscriber: str, start: datetime, end: datetime
    ) -> tuple[list[Any], list[Any]]:
        """The priced charges of calls that ended in ``[start, end)``, and their adjustments."""
        async with self.sessions() as session:
            calls = await session.execute(
                select(
                    charges.c.call_id,
                    charges.c.destination,
                    charges.c.start_time,
                    charges.c.billed_s,
                    charges.c.amount,
                    charges.c.currency,
                )
                .where(
                    and_(
                        charges.c.subscriber == subscriber,
                        charges.c.end_time >= start,
                        charges.c.end_time < end,
                        charges.c.outcome == "priced",
                    )
                )
                .order_by(charges.c.start_time, charges.c.call_id)
            )
            adjs = await session.execute(
                select(adjustments)
                .where(
                    adjustments.c.subscriber == subscriber,
                    adjustments.c.call_end_time >= start,
                    adjustments.c.call_end_time < end,
                )
                .order_by(adjustments.c.id)
            )
            return list(calls.all()), list(adjs.all())

"""SQL for the CDR store. Every write is idempotent on its natural key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    func,
    not_,
    or_,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from cdr_parser.models import (
    call_event_halves,
    cdr_keys,
    cdrs,
    dead_letters,
    edge_devices,
    pexip_conferences,
    pexip_participant_links,
    raw_payloads,
)
from cdr_parser.pairing import EventWork, Half, Rows, resolve
from cdr_parser.rows import pack_raw
from cdrkit.db import ColumnArrays, insert_ignore, sqlite_values


@dataclass(frozen=True)
class CdrFilter:
    since: datetime | None = None
    until: datetime | None = None
    account: str | None = None
    number: str | None = None
    disposition: str | None = None
    source: str | None = None
    carrier: str | None = None
    tenant: str | None = None
    direction: str | None = None
    conference: str | None = None  # a Pexip conference id: its participants' CDRs
    number_prefix: str | None = None  # caller or callee number starting with this


@dataclass
class PexipRows:
    """Pexip conference rows and participant → conference links stored with a batch."""

    conferences: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.conferences or self.links)


@dataclass
class RawPurge:
    """What one retention run removed. ``payload_refs``: the claim-check objects (``file://`` or
    ``s3://``) of the purged rows, which the caller deletes from the object store."""

    rows: int = 0
    payload_refs: list[str] = field(default_factory=list)


def _dead_letter_upsert(dialect: str) -> Any:
    """Insert a dead letter; the same message failing again (redelivery, or a retry that fails
    once more) keeps its row and refreshes the reason instead of adding a second one."""
    stmt: Any = (postgresql if dialect == "postgresql" else sqlite).insert(dead_letters)
    fresh = ("stage", "error", "reason", "topic", "partition", "offset", "last_failed_at")
    return stmt.on_conflict_do_update(
        index_elements=["dedup_key"], set_={c: stmt.excluded[c] for c in fresh}
    )


def _month_starts(now: datetime, months_ahead: int) -> list[datetime]:
    year, month = now.year, now.month
    starts = []
    for _ in range(months_ahead + 1):
        starts.append(datetime(year, month, 1, tzinfo=UTC))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return starts


class _StoreArrays(ColumnArrays):
    """``ColumnArrays`` whose ``arrays`` takes each row's values in one ``itemgetter`` call and
    transposes them with ``zip`` (C) instead of a comprehension per column: ~440 bytecodes a
    CDR of the parser's store (27 + 9 columns) became ~30 (issue 15, eighth round). The same
    lists; a row without one of the columns goes the general way (``row.get``: None)."""

    def __init__(self, table: Table) -> None:
        super().__init__(table)
        self._values = itemgetter(*self.names)

    def arrays(self, dialect: Dialect, rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
        bound = self._bound(dialect)
        if not rows:
            return [[] for _ in bound]
        try:
            columns = list(zip(*map(self._values, rows), strict=True))
        except KeyError:
            return super().arrays(dialect, rows)
        out: list[list[Any]] = []
        for (_, process), values in zip(bound, columns, strict=True):
            out.append(
                list(values)
                if process is None
                else [None if value is None else process(value) for value in values]
            )
        return out


_CDR_ARRAYS: Final = _StoreArrays(cdrs)
_RAW_ARRAYS: Final = _StoreArrays(raw_payloads)


def _store_sql() -> str:
    cdr_from, cdr_select = _CDR_ARRAYS.unnest(1)
    raw_from, raw_select = _RAW_ARRAYS.unnest(1 + len(cdrs.c))
    names = _CDR_ARRAYS.names
    call_id, start_time = 1 + names.index("call_id"), 1 + names.index("start_time")
    return (
        "WITH k AS (INSERT INTO cdr_keys (call_id, start_time) "
        f"SELECT * FROM unnest(CAST(${call_id} AS TEXT[]), "
        f"CAST(${start_time} AS TIMESTAMP WITH TIME ZONE[])) "
        "ON CONFLICT (call_id) DO NOTHING RETURNING call_id), "
        f"c AS (INSERT INTO cdrs ({', '.join(names)}) "
        f"SELECT {cdr_select} FROM {cdr_from} JOIN k ON k.call_id = u.call_id), "
        f"r AS (INSERT INTO raw_payloads ({', '.join(_RAW_ARRAYS.names)}) "
        f"SELECT {raw_select} FROM {raw_from} ON CONFLICT (call_id) DO NOTHING) "
        "SELECT call_id FROM k"
    )


# PostgreSQL: a batch's CDRs (claimed in cdr_keys, then the claimed ones into the partitioned
# cdrs) and raw payloads in one statement of column arrays: one round trip and one execution
# whatever the batch size, and the same text every time (prepared once per connection).
_STORE_SQL: Final = _store_sql()


def _first_per_call(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    firsts: dict[str, dict[str, Any]] = {}
    for row in rows:
        firsts.setdefault(row["call_id"], row)
    return list(firsts.values())


async def _store_pg(
    conn: AsyncConnection, cdr_rows: Sequence[dict[str, Any]], raw_rows: Sequence[dict[str, Any]]
) -> set[str]:
    """Store CDRs and raw payloads on PostgreSQL (``_STORE_SQL``); the call ids claimed.
    The first row of a call id wins, within the batch as against the store."""
    params = [
        *_CDR_ARRAYS.arrays(conn.dialect, _first_per_call(cdr_rows)),
        *_RAW_ARRAYS.arrays(conn.dialect, [pack_raw(r) for r in _first_per_call(raw_rows)]),
    ]
    result = await conn.exec_driver_sql(_STORE_SQL, tuple(params))
    return set(result.scalars().all())


# SQLite (the all-in-one): the same two idempotent inserts as plain statements of one VALUES
# tuple per row, the values through the columns' own bind processors (``ColumnArrays.rows``, as
# billing's and stats' SQLite sinks): SQLAlchemy's executemany processed every row's parameters
# on the event loop (~40-50 µs per CDR of the all-in-one's, issue 15, sixth round).
_SQLITE_CDRS: Final = (
    f"INSERT INTO cdrs ({', '.join(_CDR_ARRAYS.names)}) VALUES {{values}} "
    "ON CONFLICT (call_id) DO NOTHING RETURNING call_id"
)
_SQLITE_RAW: Final = (
    f"INSERT INTO raw_payloads ({', '.join(_RAW_ARRAYS.names)}) VALUES {{values}} "
    "ON CONFLICT (call_id) DO NOTHING"
)


async def _store_sqlite(
    conn: AsyncConnection, cdr_rows: Sequence[dict[str, Any]], raw_rows: Sequence[dict[str, Any]]
) -> set[str]:
    """Store CDRs and raw payloads on SQLite; the call ids inserted (not stored before). The
    first row of a call id wins, within the batch as against the store."""
    inserted: set[str] = set()
    if cdr_rows:
        rows = _CDR_ARRAYS.rows(conn.dialect, _first_per_call(cdr_rows))
        inserted = {r[0] for r in await sqlite_values(conn, _SQLITE_CDRS, rows)}
    if raw_rows:
        packed = [pack_raw(r) for r in _first_per_call(raw_rows)]
        await sqlite_values(conn, _SQLITE_RAW, _RAW_ARRAYS.rows(conn.dialect, packed))
    return inserted


class CdrRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], dialect: str) -> None:
        self.sessions = sessions
        self.dialect = dialect
        # store_batch runs its statements on a connection of this engine, not in an ORM session
        # (Core statements only): the session's begin, connection and commit cost ~150 µs of
        # Python per batch (docs/performance.md, sixth round, h6parser).
        self._engine: AsyncEngine = sessions.kw["bind"]
        # PostgreSQL: cdrs is partitioned by month and cdr_keys holds the call-id uniqueness.
        self.partitioned = dialect == "postgresql"
        self._insert_dead = _dead_letter_upsert(dialect)
        self._insert_halves = insert_ignore(call_event_halves, dialect, ["call_id", "type"])
        self._insert_conferences = insert_ignore(pexip_conferences, dialect, ["conference_id"])
        self._insert_links = insert_ignore(pexip_participant_links, dialect, ["call_id"])

    async def store_batch(
        self,
        cdr_rows: Sequence[dict[str, Any]],
        raw_rows: Sequence[dict[str, Any]],
        dead_rows: Sequence[dict[str, Any]],
        *,
        events: EventWork | None = None,
        pexip: PexipRows | None = None,
    ) -> set[str]:
        """Store a consumed batch in one transaction; return the call ids that were new.

        ``events``: call start/end halves of the batch, paired (``cdr_parser.pairing``) against
        the stored halves in this same transaction; the CDRs, raw payloads and dead letters the
        pairing yields are stored with the rest of the batch. ``pexip``: conference rows and
        participant links, inserted idempotently (the first version of a conference wins).

        Idempotent: a CDR or raw payload whose call id is stored already is left as it is (the
        first version of a call wins; CDRs are immutable). A dead letter whose dedup key is
        stored already keeps its row, with the latest reason. On PostgreSQL the call id is
        claimed in ``cdr_keys`` (``ON CONFLICT DO NOTHING RETURNING``) and only the claimed rows
        go into the partitioned ``cdrs``, with the raw payloads, all in one statement
        (``_STORE_SQL``). Always in a transaction, even when that statement is all there is: a
        consumer cancelled mid-statement (``ConsumeLoop.abort``) must leave nothing stored that
        its outcome counters did not count.
        """
        inserted: set[str] = set()
        async with self._engine.begin() as conn:
            if events is not None and events.incoming:
                more_cdrs, more_raw, more_dead = await self._pair_events(conn, events)
                cdr_rows, raw_rows = [*cdr_rows, *more_cdrs], [*raw_rows, *more_raw]
                dead_rows = [*dead_rows, *more_dead]
            if self.partitioned:
                if cdr_rows or raw_rows:
                    inserted = await _store_pg(conn, cdr_rows, raw_rows)
            elif cdr_rows or raw_rows:
                inserted = await _store_sqlite(conn, cdr_rows, raw_rows)
            if dead_rows:
                by_key = {
                    r["dedup_key"]: {**r, "last_failed_at": r["created_at"]} for r in dead_rows
                }
                await conn.execute(self._insert_dead, list(by_key.values()))
            if pexip is not None and pexip.conferences:
                await conn.execute(self._insert_conferences, pexip.conferences)
            if pexip is not None and pexip.links:
                links = {r["call_id"]: r for r in pexip.links}  # one per call id per statement
                await conn.execute(self._insert_links, list(links.values()))
        return inserted

    async def _pair_events(self, conn: AsyncConnection, work: EventWork) -> tuple[Rows, Rows, Rows]:
        query = select(call_event_halves).where(call_event_halves.c.call_id.in_(work.call_ids))
        if self.dialect == "postgresql":
            # Both halves of a call share a partition, so one consumer pairs them; the lock only
            # matters while a rebalance hands the partition over.
            query = query.with_for_update()
        stored = {
            (h.call_id, h.type): h for h in map(Half.from_row, (await conn.execute(query)).all())
        }
        res = resolve(work.incoming, stored, work.now, work.max_duration_s)
        work.resolution = res
        if res.inserts:
            await conn.execute(self._insert_halves, [h.to_row(work.now) for h in res.inserts])
        if res.newly_paired:
            await conn.execute(
                update(call_event_halves)
                .where(
                    call_event_halves.c.call_id == bindparam("b_call_id"),
                    call_event_halves.c.type == bindparam("b_type"),
                )
                .values(paired_at=work.now),
                [{"b_call_id": h.call_id, "b_type": h.type.value} for h in res.newly_paired],
            )
        return work.settle(res)

    async def pending_halves(
        self, received_before: datetime, *, limit: int
    ) -> tuple[int, Sequence[Row[Any]]]:
        """Halves still waiting for their partner, received before ``received_before``, oldest
        first (at most ``limit``), and how many there are in all."""
        cond = and_(
            call_event_halves.c.paired_at.is_(None),
            call_event_halves.c.received_at < received_before,
        )
        async with self.sessions() as session:
            total = await session.scalar(
                select(func.count()).select_from(call_event_halves).where(cond)
            )
            rows = (
                await session.execute(
                    select(call_event_halves)
                    .where(cond)
                    .order_by(call_event_halves.c.received_at, call_event_halves.c.call_id)
                    .limit(limit)
                )
            ).all()
        return int(total or 0), rows

    async def get(self, call_id: str) -> Row[Any] | None:
        query = select(cdrs).where(cdrs.c.call_id == call_id)
        if self.partitioned:
            # The start time from cdr_keys lets PostgreSQL read one partition's primary key.
            start = select(cdr_keys.c.start_time).where(cdr_keys.c.call_id == call_id)
            query = query.where(cdrs.c.start_time == start.scalar_subquery())
        async with self.sessions() as session:
            result = await session.execute(query)
            return result.first()

    async def get_raw(self, call_id: str) -> Row[Any] | None:
        async with self.sessions() as session:
            result = await session.execute(
                select(raw_payloads).where(raw_payloads.c.call_id == call_id)
            )
            return result.first()

    async def list(
        self, flt: CdrFilter, *, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[Row[Any]]:
        """Newest first, keyset-paged on (start_time, call_id) (see ``list_query``)."""
        query = self.list_query(flt, after=after, limit=limit)
        async with self.sessions() as session:
            rows: Sequence[Row[Any]] = (await session.execute(query)).all()
            return rows

    def list_query(
        self, flt: CdrFilter, *, after: tuple[datetime, str] | None, limit: int
    ) -> Select[Any]:
        """Newest first, keyset-paged on (start_time, call_id) so deep pages stay fast.

        Every filter has an index ending in (start_time, call_id), so a page is an index range
        read of ``limit`` rows (per partition touched) however large the table. The number
        filter (caller OR callee) is two such reads merged, not a bitmap OR and a sort.
        """
        conds: list[ColumnElement[bool]] = []
        if flt.since is not None:
            conds.append(cdrs.c.start_time >= flt.since)
        if flt.until is not None:
            conds.append(cdrs.c.start_time < flt.until)
        if flt.account is not None:
            conds.append(cdrs.c.account == flt.account)
        for column in ("disposition", "source", "carrier", "tenant", "direction"):
            value = getattr(flt, column)
            if value is not None:
                conds.append(cdrs.c[column] == value)
        if flt.conference is not None:
            conds.append(
                cdrs.c.call_id.in_(
                    select(pexip_participant_links.c.call_id).where(
                        pexip_participant_links.c.conference_id == flt.conference
                    )
                )
            )
        if after is not None:
            conds.append(tuple_(cdrs.c.start_time, cdrs.c.call_id) < tuple_(*after))
            # Implied by the row comparison, but only this form prunes newer partitions.
            conds.append(cdrs.c.start_time <= after[0])

        def page(*extra: ColumnElement[bool]) -> Select[Any]:
            query = select(cdrs)
            if conds or extra:
                query = query.where(and_(*conds, *extra))
            return query.order_by(cdrs.c.start_time.desc(), cdrs.c.call_id.desc()).limit(limit)

        query: Select[Any]
        if flt.number is None and flt.number_prefix is None:
            query = page()
        else:
            if flt.number is not None:
                num = flt.number
                caller, callee = cdrs.c.caller_number == num, cdrs.c.callee_number == num
            else:
                # A range on the number indexes: the rows of every number with the prefix are
                # read and the newest kept (a top-N sort), so a short prefix over a long time
                # range costs more than an exact number; the time window bounds it.
                low = flt.number_prefix or ""
                high = low + "\U0010ffff"
                # The range lets the index be used; LIKE keeps the exact meaning whatever the
                # collation does with a "+" or a space.
                caller = and_(
                    cdrs.c.caller_number >= low,
                    cdrs.c.caller_number < high,
                    cdrs.c.caller_number.startswith(low, autoescape=True),
                )
                callee = and_(
                    cdrs.c.callee_number >= low,
                    cdrs.c.callee_number < high,
                    cdrs.c.callee_number.startswith(low, autoescape=True),
                )
            as_caller = page(caller).subquery()
            as_callee_only = page(
                callee, or_(not_(caller), cdrs.c.caller_number.is_(None))
            ).subquery()
            both = union_all(select(as_caller), select(as_callee_only)).subquery()
            query = (
                select(both).order_by(both.c.start_time.desc(), both.c.call_id.desc()).limit(limit)
            )
        return query

    async def upsert_devices(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store check-ins: a device's row takes a check-in only if it is not older than the
        one it holds (first_seen is kept), so redelivery or reordering never rolls it back."""
        if not rows:
            return
        newest: dict[str, dict[str, Any]] = {}
        for row in rows:
            held = newest.get(row["device"])
            if held is None or row["last_seen"] >= held["last_seen"]:
                newest[row["device"]] = row
        stmt: Any = (postgresql if self.dialect == "postgresql" else sqlite).insert(edge_devices)
        fresh = [c.name for c in edge_devices.c if c.name not in ("device", "first_seen")]
        stmt = stmt.on_conflict_do_update(
            index_elements=["device"],
            set_={c: stmt.excluded[c] for c in fresh},
            where=edge_devices.c.last_seen <= stmt.excluded.last_seen,
        )
        async with self.sessions.begin() as session:
            await session.execute(stmt, list(newest.values()))

    async def list_devices(self) -> Sequence[Row[Any]]:
        async with self.sessions() as session:
            result = await session.execute(select(edge_devices).order_by(edge_devices.c.device))
            return result.all()

    async def list_dead_letters(self, *, before_id: int | None, limit: int) -> Sequence[Row[Any]]:
        query = select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(dead_letters.c.id < before_id)
        async with self.sessions() as session:
            return (await session.execute(query)).all()

    async def get_dead_letter(self, letter_id: int) -> Row[Any] | None:
        async with self.sessions() as session:
            result = await session.execute(
                select(dead_letters).where(dead_letters.c.id == letter_id)
            )
            return result.first()

    async def mark_retried(self, letter_id: int, at: datetime, *, pending_since: datetime) -> bool:
        """Mark a retry unless one is pending: retried after ``pending_since`` and not failed
        again since. Atomic, so of two retries at once only one goes out. False if pending."""
        settled = or_(
            dead_letters.c.retried_at.is_(None),
            dead_letters.c.retried_at < pending_since,
            dead_letters.c.last_failed_at >= dead_letters.c.retried_at,
        )
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(dead_letters)
                .where(dead_letters.c.id == letter_id, settled)
                .values(retried_at=at, retry_count=dead_letters.c.retry_count + 1)
            )
            return bool(getattr(result, "rowcount", 0))

    async def purge_raw(self, older_than: datetime, *, chunk_rows: int = 5000) -> RawPurge:
        """Delete raw payloads received before ``older_than``; the CDRs stay.

        One short transaction per chunk of ``chunk_rows``, so the purge never holds locks for
        long; ``SKIP LOCKED`` lets parser replicas purge at the same time without waiting on each
        other. Returns the count and the ``payload_ref`` of every purged claim-checked payload.
        """
        ids = (
            select(raw_payloads.c.call_id)
            .where(raw_payloads.c.received_at < older_than)
            .limit(chunk_rows)
        )
        if self.dialect == "postgresql":
            ids = ids.with_for_update(skip_locked=True)
        stmt = (
            delete(raw_payloads)
            .where(raw_payloads.c.call_id.in_(ids))
            .returning(raw_payloads.c.payload_ref)
        )
        purged = RawPurge()
        while True:
            async with self.sessions.begin() as session:
                refs = (await session.execute(stmt)).scalars().all()
            purged.rows += len(refs)
            purged.payload_refs += [ref for ref in refs if ref]
            if len(refs) < chunk_rows:
                return purged
            await asyncio.sleep(0)  # let the consumer and the API in between chunks

    async def ensure_partitions(self, now: datetime, months_ahead: int) -> Sequence[str]:
        """Create the monthly ``cdrs`` partitions from ``now``'s month to ``months_ahead`` later
        (PostgreSQL; nothing to do on SQLite). Returns the names of those it created."""
        if not self.partitioned:
            return []
        created: Sequence[str] = ()
        for month in _month_starts(now, months_ahead):
            async with self.sessions.begin() as session:
                # Waiting behind a long reader for the partition lock would queue every later
                # query behind us: give up after a while and try again on the next run.
                await session.execute(text("SET LOCAL lock_timeout = '5s'"))
                made = await session.scalar(
                    text("SELECT cdrs_ensure_partition(:at)"), {"at": month}
                )
            if made:
                created = (*created, f"cdrs_p{month:%Y%m}")
        return created

    async def raw_pages(
        self, since: datetime, until: datetime | None = None, *, page_size: int = 500
    ) -> AsyncIterator[Sequence[Row[Any]]]:
        """Retained raw payloads received in ``[since, until)``, oldest first, a page at a time.

        Keyset-paged on (received_at, call_id), one short read per page, so a replay of millions
        of payloads neither holds them in memory nor keeps a transaction open.
        """
        after: tuple[datetime, str] | None = None
        while True:
            conds = [raw_payloads.c.received_at >= since]
            if until is not None:
                conds.append(raw_payloads.c.received_at < until)
            if after is not None:
                conds.append(
                    tuple_(raw_payloads.c.received_at, raw_payloads.c.call_id) > tuple_(*after)
                )
            query = (
                select(raw_payloads)
                .where(and_(*conds))
                .order_by(raw_payloads.c.received_at, raw_payloads.c.call_id)
                .limit(page_size)
            )
            async with self.sessions() as session:
                page = (await session.execute(query)).all()
            if not page:
                return
            yield page
            if len(page) < page_size:
                return
            after = (page[-1].received_at, page[-1].call_id)


class ConferenceRepository:
    """Pexip conferences (read side of ``pexip_conferences``)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def get(self, conference_id: str) -> Row[Any] | None:
        async with self.sessions() as session:
            query = select(pexip_conferences).where(
                pexip_conferences.c.conference_id == conference_id
            )
            return (await session.execute(query)).first()

    async def list(
        self,
        *,
        since: datetime | None,
        until: datetime | None,
        name: str | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> Sequence[Row[Any]]:
        """Newest end time first, keyset-paged on (end_time, conference_id)."""
        conds: list[ColumnElement[bool]] = [pexip_conferences.c.end_time.is_not(None)]
        if since is not None:
            conds.append(pexip_conferences.c.end_time >= since)
        if until is not None:
            conds.append(pexip_conferences.c.end_time < until)
        if name is not None:
            conds.append(pexip_conferences.c.name == name)
        if after is not None:
            key = tuple_(pexip_conferences.c.end_time, pexip_conferences.c.conference_id)
            conds.append(key < tuple_(*after))
        query = (
            select(pexip_conferences)
            .where(and_(*conds))
            .order_by(pexip_conferences.c.end_time.desc(), pexip_conferences.c.conference_id.desc())
            .limit(limit)
        )
        async with self.sessions() as session:
            rows: Sequence[Row[Any]] = (await session.execute(query)).all()
            return rows

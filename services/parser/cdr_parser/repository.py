"""SQL for the CDR store. Every write is idempotent on its natural key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cdr_parser.models import cdrs, dead_letters, raw_payloads
from cdrkit.db import insert_ignore


@dataclass(frozen=True)
class CdrFilter:
    since: datetime | None = None
    until: datetime | None = None
    account: str | None = None
    number: str | None = None
    disposition: str | None = None


class CdrRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], dialect: str) -> None:
        self.sessions = sessions
        self.dialect = dialect
        self._insert_cdrs = insert_ignore(cdrs, dialect, ["call_id"]).returning(cdrs.c.call_id)
        self._insert_raw = insert_ignore(raw_payloads, dialect, ["call_id"])
        self._insert_dead = insert_ignore(dead_letters, dialect, ["dedup_key"])

    async def store_batch(
        self,
        cdr_rows: Sequence[dict[str, Any]],
        raw_rows: Sequence[dict[str, Any]],
        dead_rows: Sequence[dict[str, Any]],
    ) -> set[str]:
        """Store a consumed batch in one transaction; return the call ids that were new.

        Idempotent: a CDR or raw payload whose call id is stored already, or a dead letter whose
        dedup key is, is left as it is (the first version of a call wins; CDRs are immutable).
        """
        inserted: set[str] = set()
        async with self.sessions.begin() as session:
            if cdr_rows:
                result = await session.execute(self._insert_cdrs, list(cdr_rows))
                inserted = set(result.scalars().all())
            if raw_rows:
                await session.execute(self._insert_raw, list(raw_rows))
            if dead_rows:
                await session.execute(self._insert_dead, list(dead_rows))
        return inserted

    async def get(self, call_id: str) -> Row[Any] | None:
        async with self.sessions() as session:
            result = await session.execute(select(cdrs).where(cdrs.c.call_id == call_id))
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
        """Newest first, keyset-paged on (start_time, call_id) so deep pages stay fast."""
        query = select(cdrs)
        conds = []
        if flt.since is not None:
            conds.append(cdrs.c.start_time >= flt.since)
        if flt.until is not None:
            conds.append(cdrs.c.start_time < flt.until)
        if flt.account is not None:
            conds.append(cdrs.c.account == flt.account)
        if flt.number is not None:
            conds.append(
                or_(cdrs.c.caller_number == flt.number, cdrs.c.callee_number == flt.number)
            )
        if flt.disposition is not None:
            conds.append(cdrs.c.disposition == flt.disposition)
        if after is not None:
            conds.append(tuple_(cdrs.c.start_time, cdrs.c.call_id) < tuple_(*after))
        if conds:
            query = query.where(and_(*conds))
        query = query.order_by(cdrs.c.start_time.desc(), cdrs.c.call_id.desc()).limit(limit)
        async with self.sessions() as session:
            return (await session.execute(query)).all()

    async def list_dead_letters(self, *, before_id: int | None, limit: int) -> Sequence[Row[Any]]:
        query = select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(dead_letters.c.id < before_id)
        async with self.sessions() as session:
            return (await session.execute(query)).all()

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

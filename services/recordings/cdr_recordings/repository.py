"""SQL for the recording index. Inserts are idempotent on the call id; state changes are
conditional on the state they leave, so two runs never step on each other's work."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cdr_recordings.models import PENDING, UPLOADING, VERIFIED, recordings
from cdrkit.db import insert_ignore


class RecordingRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], dialect: str) -> None:
        self.sessions = sessions
        self._insert = insert_ignore(recordings, dialect, ["call_id"]).returning(
            recordings.c.call_id
        )

    async def add_batch(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Index rows in one transaction; the call ids that were new (a call indexed already
        keeps its row: redelivery changes nothing)."""
        if not rows:
            return set()
        unique = list({r["call_id"]: r for r in reversed(rows)}.values())
        async with self.sessions.begin() as session:
            result = await session.execute(self._insert, unique)
            return set(result.scalars().all())

    async def get(self, call_id: str) -> Row[Any] | None:
        async with self.sessions() as session:
            result = await session.execute(
                select(recordings).where(recordings.c.call_id == call_id)
            )
            return result.first()

    async def due_for_archive(
        self, cutoff: datetime, *, keep_local: bool, max_attempts: int, limit: int
    ) -> Sequence[Row[Any]]:
        """Rows older than ``cutoff`` whose local copy still has to go to S3 (or, once verified,
        be removed), oldest first, unfinished uploads before new ones."""
        states = [PENDING, UPLOADING] if keep_local else [PENDING, UPLOADING, VERIFIED]
        query = (
            select(recordings)
            .where(
                recordings.c.state.in_(states),
                recordings.c.start_time < cutoff,
                recordings.c.attempts < max_attempts,
            )
            .order_by(recordings.c.start_time, recordings.c.call_id)
            .limit(limit)
        )
        async with self.sessions() as session:
            return (await session.execute(query)).all()

    async def update(self, call_id: str, **values: Any) -> None:
        async with self.sessions.begin() as session:
            await session.execute(
                update(recordings).where(recordings.c.call_id == call_id).values(**values)
            )

    async def failed(self, call_id: str, error: str) -> None:
        async with self.sessions.begin() as session:
            await session.execute(
                update(recordings)
                .where(recordings.c.call_id == call_id)
                .values(attempts=recordings.c.attempts + 1, error=error[:2000])
            )

    async def set_uploading(self, call_id: str, upload_id: str | None, **values: Any) -> None:
        await self.update(call_id, state=UPLOADING, upload_id=upload_id, **values)

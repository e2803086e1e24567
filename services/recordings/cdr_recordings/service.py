"""The recording index (fed by ``cdr.normalized``) and resolution of a call's recording by age.

Delivery contract: ``handle_batch`` returns once the batch's index rows are committed (and any
undecodable message is acknowledged on ``cdr.dlq``); the consume loop commits offsets after that.
Rows are inserted with ``ON CONFLICT (call_id) DO NOTHING``: a redelivered CDR changes nothing.
CDRs without a recording (most calls) are skipped by a byte search before any JSON is parsed.

Resolution: a call younger than ``RECORDINGS_LOCAL_DAYS`` (by its start time) is looked for under
the local root first, an older one in S3 first; when it is not where the rule says, the other
tier is tried; when neither has it, ``NotFound`` with a sentence. A refused path (it leaves the
local root) is ``RecordingRefused`` (403), checked again on every request because a symlink can
appear after indexing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import ValidationError
from sqlalchemy import Row

from cdr_recordings.metrics import FALLBACKS, INDEXED, REFUSED
from cdr_recordings.models import LOCAL_REMOVED, PENDING
from cdr_recordings.models import REFUSED as REFUSED_STATE
from cdr_recordings.paths import (
    RecordingRefused,
    audio_format,
    content_type,
    local_file,
    relative_path,
)
from cdr_recordings.repository import RecordingRepository
from cdr_recordings.s3 import S3Tier
from cdr_recordings.settings import RecordingsSettings
from cdrkit.bus import Message, Producer, Record
from cdrmodel import CDR, DeadLetter, topics
from cdrmodel.errors import NotFound

log = logging.getLogger(__name__)

# CDR.to_json writes the top-level recording_path before `extra`, and every earlier value is a
# string with its quotes escaped, so the first `"recording_path":` is the field itself.
_FIELD = b'"recording_path":'

Location = Literal["local", "s3"]


@dataclass(frozen=True)
class Located:
    """Where a call's recording is right now."""

    row: Row[Any]
    location: Location
    size: int
    path: Path | None = None  # local: the real path
    key: str | None = None  # s3: the object key
    fallback: bool = False  # found on the tier the age rule did not name


class RecordingsService:
    def __init__(
        self,
        settings: RecordingsSettings,
        repo: RecordingRepository,
        producer: Producer,
        s3: S3Tier | None,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.producer = producer
        self.s3 = s3
        self.local_root = settings.effective_local_root

    # -- the index ---------------------------------------------------------------------------

    async def handle_batch(self, batch: Sequence[Message]) -> None:
        rows: list[dict[str, Any]] = []
        dead: list[Record] = []
        skipped = 0
        for msg in batch:
            at = msg.value.find(_FIELD)
            if at >= 0 and msg.value.startswith(b"null", at + len(_FIELD)):
                skipped += 1
                continue
            try:
                cdr = CDR.from_json(msg.value)
            except ValidationError as exc:
                log.warning("%s: not a CDR, dead-lettered: %s", msg, exc.errors()[:1])
                dead.append(Record(value=_dead_letter(msg, exc).to_json()))
                continue
            if cdr.recording_path is None:
                skipped += 1
                continue
            rows.append(self.index_row(cdr))
        if dead:
            await self.producer.send_many(topics.DLQ, dead)
        new = await self.repo.add_batch(rows)
        refused = sum(1 for r in rows if r["state"] == REFUSED_STATE and r["call_id"] in new)
        INDEXED.labels("no_recording").inc(skipped)
        INDEXED.labels("invalid").inc(len(dead))
        INDEXED.labels("refused").inc(refused)
        INDEXED.labels("indexed").inc(len(new) - refused)
        INDEXED.labels("duplicate").inc(len(rows) - len(new))

    def index_row(self, cdr: CDR, now: datetime | None = None) -> dict[str, Any]:
        """The index row for a CDR that names a recording (``stat`` of the file when it is
        there; a refused path is kept with its reason)."""
        assert cdr.recording_path is not None
        row: dict[str, Any] = {
            "call_id": cdr.call_id,
            "recording_path": cdr.recording_path,
            "relative_path": None,
            "tenant": cdr.tenant,
            "start_time": cdr.start_time,
            "format": audio_format(cdr.recording_path)[:16],
            "size_bytes": None,
            "state": PENDING,
            "error": None,
            "indexed_at": now or datetime.now(UTC),
        }
        try:
            rel = relative_path(cdr.recording_path, self.settings.switch_root, self.local_root)
            real = local_file(self.local_root, rel)
        except RecordingRefused as exc:
            REFUSED.labels("index").inc()
            log.warning("call %s: recording refused: %s", cdr.call_id, exc.detail)
            row.update(state=REFUSED_STATE, error=exc.detail)
            return row
        row["relative_path"] = rel
        # Not there (yet, or on another volume): located on request.
        with contextlib.suppress(OSError):
            row["size_bytes"] = os.stat(real, follow_symlinks=False).st_size
        return row

    # -- resolution --------------------------------------------------------------------------

    def age(self, row: Row[Any], now: datetime | None = None) -> timedelta:
        start: datetime = row.start_time
        return (now or datetime.now(UTC)) - start

    def local_first(self, row: Row[Any], now: datetime | None = None) -> bool:
        return self.age(row, now) < timedelta(days=self.settings.local_days)

    async def row(self, call_id: str) -> Row[Any]:
        row = await self.repo.get(call_id)
        if row is None:
            raise NotFound(f"no recording is indexed for call {call_id[:128]!r}")
        if row.state == REFUSED_STATE:
            REFUSED.labels("serve").inc()
            log.warning("call %s: refused recording requested: %s", row.call_id, row.error)
            raise RecordingRefused(f"the recording of call {row.call_id} is refused: {row.error}")
        return row

    async def describe(self, call_id: str) -> dict[str, Any]:
        """Where a call's recording is (local or s3), its size, format, age and archive state."""
        now = datetime.now(UTC)
        found = await self.locate(call_id, now)
        row = found.row
        return {
            "call_id": row.call_id,
            "location": found.location,
            "fallback": found.fallback,
            "size": found.size,
            "format": row.format,
            "content_type": content_type(row.format),
            "tenant": row.tenant,
            "start_time": row.start_time.isoformat(),
            "age_s": int(self.age(row, now).total_seconds()),
            "state": row.state,
            "recording_path": row.recording_path,
            "s3_key": found.key,
            "archived_at": row.archived_at.isoformat() if row.archived_at else None,
            "audio_url": f"/v1/recordings/{quote(row.call_id, safe='')}/audio",
        }

    async def locate(self, call_id: str, now: datetime | None = None) -> Located:
        row = await self.row(call_id)
        order: tuple[Location, Location] = (
            ("local", "s3") if self.local_first(row, now) else ("s3", "local")
        )
        for i, tier in enumerate(order):
            found = await (self._local(row) if tier == "local" else self._s3(row))
            if found is not None:
                if i:
                    FALLBACKS.labels(tier).inc()
                    log.info("call %s: recording found on %s, not %s", call_id, tier, order[0])
                size, where = found
                if tier == "local":
                    return Located(row, tier, size, path=where, fallback=bool(i))
                return Located(row, tier, size, key=where, fallback=bool(i))
        where = f"under the local root {self.local_root}"
        if self.s3 is not None:
            where += f" nor in s3://{self.s3.bucket}/{self._key(row)}"
        else:
            where += " (no S3 bucket is configured)"
        raise NotFound(
            f"the recording of call {row.call_id} ({row.recording_path}) was found neither {where}"
        )

    async def _local(self, row: Row[Any]) -> tuple[int, Any] | None:
        if row.state == LOCAL_REMOVED:
            return None
        try:
            real = local_file(self.local_root, row.relative_path)
        except RecordingRefused as exc:
            REFUSED.labels("serve").inc()
            log.warning("call %s: recording refused: %s", row.call_id, exc.detail)
            raise
        try:
            st = os.stat(real, follow_symlinks=False)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return st.st_size, real

    def _key(self, row: Row[Any]) -> str:
        assert self.s3 is not None
        key: str = row.s3_key or self.s3.key_for(row.tenant, row.start_time, row.relative_path)
        return key

    async def _s3(self, row: Row[Any]) -> tuple[int, Any] | None:
        if self.s3 is None:
            return None
        key = self._key(row)
        head = await self.s3.head(key)
        if head is None:
            return None
        return int(head["ContentLength"]), key


def _dead_letter(msg: Message, exc: Exception) -> DeadLetter:
    return DeadLetter(
        stage="recordings",
        error="invalid_cdr",
        reason=f"not a CDR: {exc}"[:2000],
        failed_at=datetime.now(UTC),
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        raw_value=msg.value[:100_000].decode("utf-8", "replace"),
    )

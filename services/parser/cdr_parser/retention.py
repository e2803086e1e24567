"""The parser's periodic upkeep: purge raw payloads past retention, keep partitions ahead.

Raw payloads (``GET /v1/cdrs/{id}/raw``) are kept ``PARSER_RAW_RETENTION_DAYS`` after ingest
received them; the normalised CDRs are kept for good. On PostgreSQL the job also creates the
monthly ``cdrs`` partitions ``PARSER_PARTITION_MONTHS_AHEAD`` months ahead. Every replica runs it;
both steps are safe to run concurrently (``SKIP LOCKED`` chunks, an advisory lock).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cdr_parser.metrics import RAW_PURGED, RETENTION_RUNS
from cdr_parser.repository import CdrRepository, RawPurge
from cdr_parser.settings import ParserSettings
from cdrkit.objects import ObjectStore

log = logging.getLogger(__name__)

# The first run comes soon after start (not a whole interval later), but not during start-up.
FIRST_RUN_DELAY_S = 30.0


class RetentionJob:
    def __init__(
        self, settings: ParserSettings, repo: CdrRepository, store: ObjectStore | None = None
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.store = store  # where claim-checked payloads live; their objects go with their rows
        self.last_run: datetime | None = None

    async def run_once(self, now: datetime | None = None) -> RawPurge:
        """One run; returns what the purge removed (its ``payload_refs`` are the claim-check
        objects that can now be deleted)."""
        now = now or datetime.now(UTC)
        ok = True
        try:
            created = await self.repo.ensure_partitions(now, self.settings.partition_months_ahead)
            if created:
                log.info("created CDR partitions %s", ", ".join(created))
        except Exception:
            ok = False
            log.exception("creating the CDR partitions ahead failed; retrying on the next run")
        cutoff = now - timedelta(days=self.settings.raw_retention_days)
        purged = RawPurge()
        try:
            purged = await self.repo.purge_raw(
                cutoff, chunk_rows=self.settings.retention_chunk_rows
            )
        except Exception:
            ok = False
            log.exception("purging raw payloads failed; retrying on the next run")
        RAW_PURGED.inc(purged.rows)
        if self.store is not None and purged.payload_refs:
            ok = await self._delete_objects(purged.payload_refs) and ok
        RETENTION_RUNS.labels("ok" if ok else "failed").inc()
        if purged.rows:
            log.info("purged %d raw payloads received before %s", purged.rows, cutoff.isoformat())
        self.last_run = now
        return purged

    async def _delete_objects(self, refs: Sequence[str]) -> bool:
        """Delete the claim-check objects of purged rows (after the rows: a failure here leaves
        an unreferenced object behind, never a row whose payload is gone)."""
        assert self.store is not None
        store, failed = self.store, 0
        for ref in refs:
            try:
                await store.delete(ref)  # a missing object (another replica) is no error
            except Exception:
                failed += 1
                log.warning("could not delete claim-check object %s", ref, exc_info=True)
        return failed == 0

    async def run_forever(self) -> None:
        delay = min(FIRST_RUN_DELAY_S, self.settings.retention_interval_s)
        while True:
            await asyncio.sleep(delay)
            await self.run_once()
            delay = self.settings.retention_interval_s

"""One pull: a window of conference and participant history from the Management Node to ingest
and the CSV files, then the checkpoint.

Order (what is committed when):
1. both record types are paged concurrently (at most 2 requests in flight, ``client.py``), each
   record deduplicated by id within the pull, written to this pull's temporary CSV files and
   posted to ingest in batches (``POST /v1/pexip/history``; ingest answers 202 once durable);
2. the CSV files are published (temp + rename) and merged into the aggregates;
3. only then is the checkpoint (highest ``end_time`` seen) persisted.
A failure anywhere leaves the checkpoint where it was: the next pull repeats the window, ingest and
the CDR store dedupe on the record id, the aggregates on the id column.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from cdr_ingest.pexip.client import AuthFailed, HistoryClient, PullFailed
from cdr_ingest.pexip.csvfiles import PullFiles, remove_leftovers
from cdr_ingest.pexip.metrics import (
    PEXIP_CHECKPOINT,
    PEXIP_LAST_SUCCESS,
    PEXIP_PULLS,
    PEXIP_RECORDS,
    PEXIP_RETENTION_GAP,
)
from cdr_ingest.pexip.records import BadRecord, Page, RecordType, parse_pexip_time, record_id
from cdr_ingest.pexip.settings import PexipSettings
from cdr_ingest.pexip.state import PullState

log = logging.getLogger(__name__)

# Pexip keeps the most recent ~10,000 conference instances; a window holding that many may have
# lost its oldest ones already.
RETENTION_CONFERENCES = 10_000

BATCH_KEY = {RecordType.CONFERENCE: "conferences", RecordType.PARTICIPANT: "participants"}


@dataclass
class PullResult:
    since: datetime | None
    until: datetime
    records: dict[RecordType, int] = field(default_factory=lambda: dict.fromkeys(RecordType, 0))
    aggregate_added: dict[RecordType, int] = field(default_factory=dict)
    posted: int = 0
    rejected_by_ingest: int = 0
    checkpoint: datetime | None = None
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        since = self.since.isoformat() if self.since else "the oldest record kept"
        return (
            f"pulled {self.records[RecordType.CONFERENCE]} conferences and "
            f"{self.records[RecordType.PARTICIPANT]} participants ending in [{since}, "
            f"{self.until.isoformat()}); posted {self.posted} to ingest; aggregates gained "
            f"{self.aggregate_added.get(RecordType.CONFERENCE, 0)} conferences and "
            f"{self.aggregate_added.get(RecordType.PARTICIPANT, 0)} participants; checkpoint "
            f"{self.checkpoint.isoformat() if self.checkpoint else '-'} ({self.seconds:.1f} s)"
        )


class IngestSink:
    """Posts history records to ingest's ``POST /v1/pexip/history`` (202 once durable)."""

    def __init__(
        self,
        settings: PexipSettings,
        client: httpx.AsyncClient | None = None,
        backoff_s: float = 0.5,
    ) -> None:
        self.settings = settings
        url = (settings.ingest_url or "").rstrip("/")
        self.url = url if url.endswith("/v1/pexip/history") else url + "/v1/pexip/history"
        self.backoff_s = backoff_s
        headers = {}
        if settings.ingest_token is not None:
            headers["Authorization"] = f"Bearer {settings.ingest_token.get_secret_value()}"
        self._own = client is None
        self._http = client or httpx.AsyncClient(timeout=settings.timeout_s)
        self._headers = headers
        self.posted = 0
        self.rejected = 0

    async def close(self) -> None:
        if self._own:
            await self._http.aclose()

    async def report(self, result: PullResult) -> None:
        """Tell ingest the pull completed (GET /v1/pexip/pulls, the console); best effort."""
        url = self.url.removesuffix("/history") + "/pulls"
        body = {
            "node": urlsplit(self.settings.url or "").netloc or "pexip",
            "finished": datetime.now(UTC).isoformat(),
            "since": result.since.isoformat() if result.since else None,
            "until": result.until.isoformat(),
            "checkpoint": result.checkpoint.isoformat() if result.checkpoint else None,
            "conferences": result.records[RecordType.CONFERENCE],
            "participants": result.records[RecordType.PARTICIPANT],
            "posted": result.posted,
            "cron": self.settings.cron,
            "warnings": [w[:500] for w in result.warnings[:20]],
        }
        try:
            resp = await self._http.post(url, json=body, headers=self._headers)
        except httpx.TransportError as exc:
            log.warning("could not report the pull to ingest: %s", exc)
            return
        if resp.status_code != 200:
            log.warning("ingest answered %d to the pull report", resp.status_code)

    async def post(self, rtype: RecordType, records: list[dict[str, Any]]) -> None:
        body = {BATCH_KEY[rtype]: records}
        attempt = 0
        while True:
            try:
                resp = await self._http.post(self.url, json=body, headers=self._headers)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code in (200, 202):
                    answer = resp.json()
                    self.posted += int(answer.get("accepted", 0))
                    for rej in answer.get("rejected", []):
                        self.rejected += 1
                        log.warning(
                            "ingest rejected %s %s: %s",
                            rtype.value,
                            rej.get("id"),
                            rej.get("detail"),
                        )
                    return
                if resp.status_code in (401, 403):
                    raise PullFailed(
                        f"ingest refused the token ({resp.status_code}); check PEXIP_INGEST_TOKEN"
                    )
                if resp.status_code not in (429, 503) and resp.status_code < 500:
                    raise PullFailed(
                        f"ingest answered {resp.status_code} to a {rtype.value} batch: "
                        f"{resp.text[:200]}"
                    )
                reason = f"HTTP {resp.status_code}"
            if attempt >= self.settings.retries:
                raise PullFailed(f"ingest at {self.url} did not take the records ({reason})")
            wait = min(self.backoff_s * 2**attempt, self.settings.retry_max_s)
            attempt += 1
            log.warning("POST %s: %s; retry %d in %.1f s", self.url, reason, attempt, wait)
            await asyncio.sleep(wait)


@contextmanager
def exclusive(settings: PexipSettings) -> Iterator[None]:
    """One pull at a time per data dir (a manual pull next to ``run``, two CronJob pods)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with (settings.data_dir / ".lock").open("a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PullFailed(
                f"another pull is running on {settings.data_dir} (its .lock is held)"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


class Puller:
    def __init__(
        self,
        settings: PexipSettings,
        *,
        node_transport: httpx.AsyncBaseTransport | None = None,
        ingest_client: httpx.AsyncClient | None = None,
        backoff_s: float = 0.5,
    ) -> None:
        self.settings = settings
        self.node_transport = node_transport
        self.ingest_client = ingest_client
        self.backoff_s = backoff_s
        self.max_in_flight = 0

    def window(
        self, state: PullState, since: datetime | None, until: datetime | None, now: datetime
    ) -> tuple[datetime | None, datetime]:
        until = until or now
        if since is None and state.checkpoint is not None:
            since = state.checkpoint - self.settings.overlap
        if since is not None and since >= until:
            raise PullFailed(f"the window is empty: since {since.isoformat()} is not before until")
        return since, until

    def retention_warnings(self, state: PullState, now: datetime) -> list[str]:
        if state.last_success is None:
            return []
        gap = now - state.last_success
        if gap <= timedelta(seconds=self.settings.retention_s):
            return []
        return [
            f"the last good pull was {gap.total_seconds() / 3600:.1f} h ago, longer than "
            f"PEXIP_RETENTION ({self.settings.retention_s / 3600:.1f} h): Pexip may have purged "
            "records of that gap for good"
        ]

    async def pull(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> PullResult:
        try:
            with exclusive(self.settings):
                result = await self._pull(since, until)
        except AuthFailed:
            PEXIP_PULLS.labels("auth_failed").inc()
            raise
        except BaseException:
            PEXIP_PULLS.labels("failed").inc()
            raise
        PEXIP_PULLS.labels("ok").inc()
        return result

    async def _pull(self, since: datetime | None, until: datetime | None) -> PullResult:
        started = time.perf_counter()
        settings = self.settings
        now = datetime.now(UTC)
        remove_leftovers(settings.data_dir)
        state = PullState.load(settings.data_dir)
        since, until = self.window(state, since, until, now)
        result = PullResult(since, until)
        for warning in self.retention_warnings(state, now):
            self._warn(result, warning)
        sink = (
            IngestSink(settings, self.ingest_client, self.backoff_s)
            if settings.ingest_url or self.ingest_client is not None
            else None
        )
        if sink is None:
            log.warning("PEXIP_INGEST_URL is not set: this pull writes only the CSV files")
        highest: datetime | None = state.checkpoint
        files: PullFiles | None = None
        try:
            try:
                async with HistoryClient(
                    settings, transport=self.node_transport, backoff_s=self.backoff_s
                ) as client:
                    # Nothing is written before the node has accepted the credentials: a wrong
                    # password leaves no file behind.
                    first = {
                        rtype: await client.get_page(client.first_path(rtype, since, until), rtype)
                        for rtype in RecordType
                    }
                    files = PullFiles(settings.data_dir, now)
                    total = first[RecordType.CONFERENCE].total_count
                    if total is not None and total >= RETENTION_CONFERENCES and since is not None:
                        self._warn(
                            result,
                            f"the window holds {total} conferences, as many as Pexip keeps: the "
                            "oldest of them may have been purged already; pull more often",
                        )
                    ends = await asyncio.gather(
                        *(
                            self._stream(
                                client, rtype, first[rtype], since, until, files, sink, result
                            )
                            for rtype in RecordType
                        )
                    )
                    self.max_in_flight = client.max_in_flight
                for end in ends:
                    if end is not None and (highest is None or end > highest):
                        highest = end
                result.aggregate_added = files.commit()
                result.files = [str(p) for p in files.final.values()]
            except BaseException:
                if files is not None:
                    files.abort()
                raise
            if sink is not None:
                result.posted, result.rejected_by_ingest = sink.posted, sink.rejected
            state.checkpoint = highest
            state.last_success = now
            state.save(settings.data_dir)
            if highest is not None:
                PEXIP_CHECKPOINT.set(highest.timestamp())
            PEXIP_LAST_SUCCESS.set(now.timestamp())
            result.checkpoint = highest
            result.seconds = time.perf_counter() - started
            log.info("%s", result.summary())
            if sink is not None:
                await sink.report(result)
        finally:
            if sink is not None:
                await sink.close()
        return result

    def _warn(self, result: PullResult, warning: str) -> None:
        PEXIP_RETENTION_GAP.inc()
        log.warning("%s", warning)
        result.warnings.append(warning)

    async def _stream(
        self,
        client: HistoryClient,
        rtype: RecordType,
        first: Page,
        since: datetime | None,
        until: datetime,
        files: PullFiles,
        sink: IngestSink | None,
        result: PullResult,
    ) -> datetime | None:
        seen: set[str] = set()
        highest: datetime | None = None
        batch: list[dict[str, Any]] = []
        paths: set[str] = set()
        page: Page | None = first
        # The next page is fetched while this one is written and posted (one request ahead per
        # record type: with the other type's, still at most 2 in flight).
        ahead: asyncio.Task[Page] | None = None
        try:
            while page is not None:
                if page.next is not None:
                    path = client.next_path(page.next)
                    if path in paths:  # a node answering the same meta.next forever
                        raise PullFailed(f"the node's meta.next repeats {path}; stopped paging")
                    paths.add(path)
                    ahead = asyncio.create_task(client.get_page(path, rtype))
                for obj in page.objects:
                    try:
                        rid = record_id(obj)
                        end = parse_pexip_time(obj.get("end_time"), "end_time")
                    except BadRecord as exc:
                        PEXIP_RECORDS.labels(rtype.value, "rejected").inc()
                        log.warning("skipped a %s history record: %s", rtype.value, exc)
                        continue
                    if rid in seen:
                        PEXIP_RECORDS.labels(rtype.value, "duplicate").inc()
                        continue
                    seen.add(rid)
                    if end is not None and (highest is None or end > highest):
                        highest = end
                    files.write(rtype, obj)
                    if sink is not None:
                        batch.append(obj)
                        if len(batch) >= self.settings.ingest_batch:
                            await sink.post(rtype, batch)
                            batch = []
                PEXIP_RECORDS.labels(rtype.value, "new").inc(len(seen) - result.records[rtype])
                result.records[rtype] = len(seen)
                page, ahead = (await ahead if ahead is not None else None), None
        finally:
            if ahead is not None:
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)
        if sink is not None and batch:
            await sink.post(rtype, batch)
        return highest

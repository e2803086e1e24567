"""``cdrflow replay``: send saved FreeSWITCH CDR files to ingest again, or re-publish the raw
payloads the CDR store retained.

Files: mod_xml_cdr writes ``[a_]<uuid>.cdr.xml`` into its log-dir (every CDR) and its err-log-dir
(the posts that failed after all retries); mod_json_cdr writes ``[a_]<uuid>.cdr.json``. Each file
is posted the way the switch posts it: ``POST /v1/cdr?uuid=[a_]<uuid>`` with the raw document
(``text/xml`` or ``application/json``), over a few keep-alive connections with a bounded number
of requests in flight. A 503 or a connection error is retried with backoff (bounded); any other
answer is final. Ingest answers ``duplicate`` for a copy it accepted recently, and the CDR store
is idempotent on the call id, so replaying the same files twice changes nothing.

Store: the rows of the parser's ``raw_payloads`` table received in ``[since, until)`` are
published again as raw envelopes (their original envelope id, call id and payload) to
``cdr.raw``. The parser keeps the first version of every call, so this changes no stored CDR; it
re-publishes them to ``cdr.normalized`` for the consumers downstream, which dedupe on the call id.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote

import httpx

if TYPE_CHECKING:
    from cdrkit.bus import Producer
    from cdrkit.settings import ServiceSettings

log = logging.getLogger(__name__)

FILE_NAME = re.compile(r"^(?P<uuid>.+)\.cdr\.(?P<ext>xml|json)$")
CONTENT_TYPES = {"xml": "text/xml", "json": "application/json"}
# Answers worth another try: the service (or a proxy in front of it) is unavailable right now.
RETRY_STATUSES = frozenset({502, 503, 504})
STREAM_ABOVE = 1 << 20  # bigger files are streamed in chunks rather than read whole
CHUNK = 1 << 16
SKIPPED_REASON = "not a [a_]<uuid>.cdr.xml or .cdr.json file"


@dataclass(frozen=True, slots=True)
class CdrFile:
    path: Path
    uuid: str  # the query parameter, as mod_xml_cdr sends it (``a_`` prefix kept)
    content_type: str


def cdr_file(path: Path) -> CdrFile | None:
    """The file as a CDR to post, or None when its name is not one a switch writes."""
    match = FILE_NAME.match(path.name)
    if match is None:
        return None
    return CdrFile(path, match["uuid"], CONTENT_TYPES[match["ext"]])


@dataclass(frozen=True, slots=True)
class Failure:
    item: str  # the file, or the call id when replaying from the store
    reason: str  # what failures are grouped by: "HTTP 400 not_well_formed", "connection error …"
    detail: str


@dataclass
class Summary:
    """What a replay did. ``failed`` items were not delivered; everything else was."""

    total: int = 0
    accepted: int = 0
    duplicate: int = 0
    failures: list[Failure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None  # why a store replay stopped before the end

    @property
    def failed(self) -> int:
        return len(self.failures)

    def reasons(self) -> list[tuple[str, int]]:
        return Counter(f.reason for f in self.failures).most_common()

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "failed": self.failed,
            "skipped": len(self.skipped),
            "seconds": round(self.seconds, 3),
            "per_second": round(self.done / self.seconds, 1) if self.seconds else None,
            "reasons": dict(self.reasons()),
            "stopped": self.stopped,
            "failures": [
                {"item": f.item, "reason": f.reason, "detail": f.detail} for f in self.failures
            ],
            "skipped_items": self.skipped,
        }

    @property
    def done(self) -> int:
        return self.accepted + self.duplicate + self.failed

    def render(self, what: str) -> str:
        rate = f" ({self.done / self.seconds:,.0f}/s)" if self.seconds else ""
        lines = [
            f"replayed {self.done} {what} in {self.seconds:.1f} s{rate}",
            f"  accepted   {self.accepted}",
            f"  duplicate  {self.duplicate}",
            f"  failed     {self.failed}",
        ]
        lines += [f"    {count:>6}  {reason}" for reason, count in self.reasons()]
        if self.skipped:
            lines.append(f"  skipped    {len(self.skipped)} ({SKIPPED_REASON})")
        if self.stopped:
            lines.append(f"  stopped early: {self.stopped}")
        return "\n".join(lines)


class Progress:
    """A rich progress bar on a terminal (done/total, rate, time left, failures); silent when the
    stream is not one."""

    def __init__(self, total: int | None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.total = total
        self.done = 0
        self.failed = 0
        self._bar: Any = None
        self._task: Any = None
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("replay"),
                BarColumn(),
                MofNCompleteColumn() if total else TextColumn("{task.completed:,}"),
                TaskProgressColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[rate]}/s{task.fields[failed]}"),
                console=Console(file=self.stream),
                refresh_per_second=10,
            )
            self._task = self._bar.add_task("replay", total=total, rate="0", failed="")
            self._bar.start()
            self.started = time.monotonic()

    def advance(self, n: int = 1, *, failed: int = 0) -> None:
        self.done += n
        self.failed += failed
        if self._bar is not None:
            elapsed = max(time.monotonic() - self.started, 1e-9)
            self._bar.update(
                self._task,
                advance=n,
                rate=f"{self.done / elapsed:,.0f}",
                failed=f"  failed {self.failed:,}" if self.failed else "",
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.done:,}"
        if self.total:
            width = 30
            filled = width * self.done // self.total
            eta = (self.total - self.done) / rate if rate else 0.0
            text = (
                f"[{'#' * filled}{'.' * (width - filled)}] {self.done:,}/{self.total:,} "
                f"{100 * self.done / self.total:3.0f}%  ETA {eta:4.0f} s"
            )
        failed = f"  failed {self.failed:,}" if self.failed else ""
        self.stream.write(f"\rreplay {text}  {rate:,.0f}/s{failed}\x1b[K")
        self.stream.flush()


def collect(paths: Iterable[Path]) -> tuple[list[CdrFile], list[str], list[Failure]]:
    """The CDR files under ``paths`` (directories walked recursively, in name order), the files
    skipped for their name, and the paths that do not exist."""
    files: list[CdrFile] = []
    skipped: list[str] = []
    missing: list[Failure] = []

    def add(path: Path) -> None:
        found = cdr_file(path)
        if found is None:
            skipped.append(str(path))
        else:
            files.append(found)

    for root in paths:
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(filenames):
                    add(Path(dirpath, name))
        elif root.is_file():
            add(root)
        else:
            missing.append(Failure(str(root), "not found", f"{root}: no such file or directory"))
    return files, skipped, missing


def auth_headers(token: str | None, user: str | None) -> dict[str, str]:
    """``Authorization`` for a bearer token or HTTP Basic ``name:password`` (mod_xml_cdr cred)."""
    if token:
        return {"authorization": f"Bearer {token}"}
    if user:
        return {"authorization": "Basic " + base64.b64encode(user.encode()).decode()}
    return {}


def endpoint(url: str) -> str:
    """The ingest base URL (``http://host:8000``) or the full endpoint (``…/v1/cdr``)."""
    url = url.rstrip("/")
    return url if url.endswith("/v1/cdr") else f"{url}/v1/cdr"


def backoff(attempt: int, base_s: float, retry_after: str | None = None) -> float:
    """Exponential with jitter, capped at 10 s; a server's Retry-After (seconds) wins."""
    if retry_after and retry_after.strip().isdigit():
        return min(float(retry_after), 30.0)
    return float(min(base_s * 2**attempt, 10.0) * random.uniform(0.5, 1.0))


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def _error(resp: httpx.Response) -> tuple[str, str]:
    """The error code and sentence of an answer (``{"error", "detail"}``), else the status."""
    try:
        body = json.loads(resp.content)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"], str(body.get("detail") or "")
    return resp.reason_phrase or "error", resp.text[:200]


class FileSender:
    """Posts one file, retrying what is worth retrying. Returns the outcome.

    It talks to an httpx transport (one keep-alive connection) rather than an ``AsyncClient``:
    the client's cookie jar, auth and redirect layers cost a third of the replay's CPU per
    request, and a replay needs none of them.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        url: str,
        *,
        headers: dict[str, str],
        timeout_s: float,
        retries: int,
        backoff_s: float,
    ) -> None:
        self.transport = transport
        self.url = endpoint(url)
        self.headers = headers
        self.extensions = {"timeout": httpx.Timeout(timeout_s, pool=None).as_dict()}
        self.retries = retries
        self.backoff_s = backoff_s

    async def post(self, target: str, content: bytes | AsyncIterator[bytes], headers: Any) -> Any:
        request = httpx.Request(
            "POST", target, content=content, headers=headers, extensions=self.extensions
        )
        resp = await self.transport.handle_async_request(request)
        try:
            await resp.aread()
        finally:
            await resp.aclose()
        return resp

    async def send(self, f: CdrFile) -> str | Failure:
        """``"accepted"``, ``"duplicate"`` or the ``Failure``."""
        target = f"{self.url}?uuid={quote(f.uuid, safe='')}"
        failure: Failure | None = None
        for attempt in range(self.retries + 1):
            retry_after = None
            try:
                size = f.path.stat().st_size
                # Files are read when their turn comes, and big ones streamed in chunks, so
                # memory stays bounded by the requests in flight.
                content: bytes | AsyncIterator[bytes] = (
                    f.path.read_bytes() if size <= STREAM_ABOVE else _chunks(f.path)
                )
            except OSError as exc:
                return Failure(str(f.path), f"unreadable ({type(exc).__name__})", str(exc))
            headers = {
                **self.headers,
                "content-type": f.content_type,
                "content-length": str(size),
            }
            try:
                resp = await self.post(target, content, headers)
            except httpx.TransportError as exc:
                name = type(exc).__name__
                failure = Failure(str(f.path), f"connection error ({name})", str(exc) or name)
            else:
                if resp.is_success:
                    try:
                        status = json.loads(resp.content).get("status")
                    except (ValueError, AttributeError):
                        status = None
                    return "duplicate" if status == "duplicate" else "accepted"
                code, detail = _error(resp)
                failure = Failure(str(f.path), f"HTTP {resp.status_code} {code}", detail)
                if resp.status_code not in RETRY_STATUSES:
                    return failure
                retry_after = resp.headers.get("retry-after")
            if attempt < self.retries:
                await asyncio.sleep(backoff(attempt, self.backoff_s, retry_after))
        assert failure is not None
        return failure


async def replay_files(
    files: Sequence[CdrFile],
    *,
    url: str,
    token: str | None = None,
    user: str | None = None,
    concurrency: int = 16,
    retries: int = 5,
    backoff_s: float = 0.2,
    timeout_s: float = 60.0,
    transport: httpx.AsyncBaseTransport | None = None,
    progress: Progress | None = None,
) -> Summary:
    """Post every file (see the module docstring); ``transport`` lets tests talk to an app."""
    summary = Summary(total=len(files))
    progress = progress or Progress(len(files))
    started = time.perf_counter()
    queue: Iterator[CdrFile] = iter(files)  # shared by the workers: one request each in flight
    tls = httpx.create_ssl_context()  # built once: loading the CA bundle costs ~15 ms

    async def worker() -> None:
        # One keep-alive connection per worker, in a pool of its own: httpcore's pool scans all
        # its connections on every request, which costs more CPU than the request at 16.
        own = httpx.AsyncHTTPTransport(verify=tls, limits=httpx.Limits(max_connections=1))
        async with own:
            sender = FileSender(
                transport or own,
                url,
                headers=auth_headers(token, user),
                timeout_s=timeout_s,
                retries=retries,
                backoff_s=backoff_s,
            )
            for f in queue:
                outcome = await sender.send(f)
                if isinstance(outcome, Failure):
                    summary.failures.append(outcome)
                    log.debug("%s: %s: %s", outcome.item, outcome.reason, outcome.detail)
                    progress.advance(failed=1)
                    continue
                if outcome == "duplicate":
                    summary.duplicate += 1
                else:
                    summary.accepted += 1
                progress.advance()

    async with asyncio.TaskGroup() as group:
        for _ in range(max(1, min(concurrency, len(files)))):
            group.create_task(worker())
    summary.seconds = time.perf_counter() - started
    progress.close()
    return summary


async def replay_paths(paths: Iterable[Path], **options: Any) -> Summary:
    """Collect the CDR files under ``paths`` and replay them (options: ``replay_files``)."""
    files, skipped, missing = collect(paths)
    summary = await replay_files(files, **options)
    summary.skipped = skipped
    summary.failures[:0] = missing
    summary.total += len(missing)
    return summary


async def replay_store(
    pages: AsyncIterator[Sequence[Any]],
    producer: Producer,
    *,
    retries: int = 5,
    backoff_s: float = 0.2,
    progress: Progress | None = None,
) -> Summary:
    """Publish each page of ``raw_payloads`` rows as raw envelopes to ``cdr.raw``.

    A page is one ``send_many`` (acknowledged by the broker before the next page is read). A bus
    error is retried with backoff; if it persists the replay stops there, so its summary lists
    what was published and why it stopped.
    """
    from cdr_parser.rows import stored_payload
    from cdrkit.bus import BusError, Record
    from cdrmodel import Origin, PayloadKind, RawEnvelope, sha256_hex, topics

    summary = Summary()
    progress = progress or Progress(None)
    started = time.perf_counter()
    async for page in pages:
        records: list[Record] = []
        replayed: list[str] = []  # the call id of every row in records (a row: 1 or 2 records)
        for row in page:
            summary.total += 1
            try:
                payload = stored_payload(row)
                envelopes = [
                    RawEnvelope(
                        id=row.envelope_id,
                        kind=row.kind,
                        received_at=row.received_at,
                        source=Origin(),
                        content_type=row.content_type,
                        call_id=row.call_id,
                        payload=payload,
                        payload_ref=row.payload_ref,
                        sha256=row.sha256,
                    )
                ]
                halves = None
                if envelopes[0].kind is PayloadKind.CALL_EVENT and payload is not None:
                    halves = json.loads(payload)
                if isinstance(halves, list):
                    # A paired call's payload is its two records, [start, end]; the parser
                    # takes one record per envelope, so each half travels on its own again.
                    envelopes = [
                        envelopes[0].model_copy(
                            update={
                                "id": f"{row.envelope_id}.{n}",
                                "payload": text,
                                "sha256": sha256_hex(text),
                            }
                        )
                        for n, text in enumerate(
                            json.dumps(half, separators=(",", ":")) for half in halves
                        )
                    ]
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                summary.failures.append(
                    Failure(row.call_id, "invalid stored payload", str(exc).splitlines()[0])
                )
                progress.advance(failed=1)
                continue
            records += [Record(value=e.to_json(), key=row.call_id.encode()) for e in envelopes]
            replayed.append(row.call_id)
        if not records:
            continue
        for attempt in range(retries + 1):
            try:
                await producer.send_many(topics.RAW, records)
                break
            except (BusError, TimeoutError) as exc:
                if attempt == retries:
                    reason = f"bus error ({type(exc).__name__})"
                    for call_id in replayed:
                        summary.failures.append(Failure(call_id, reason, str(exc)))
                    summary.stopped = f"the bus did not acknowledge after {retries} retries"
                    progress.advance(len(replayed), failed=len(replayed))
                    summary.seconds = time.perf_counter() - started
                    progress.close()
                    return summary
                await asyncio.sleep(backoff(attempt, backoff_s))
        summary.accepted += len(replayed)
        progress.advance(len(replayed))
    summary.seconds = time.perf_counter() - started
    progress.close()
    return summary


async def replay_from_store(
    since: datetime,
    until: datetime | None,
    *,
    retries: int = 5,
    progress: Progress | None = None,
    settings: ServiceSettings | None = None,
) -> Summary:
    """Open the store (``CDRFLOW_DATABASE_URL``) and the bus (``CDRFLOW_BUS_URL``) and replay."""
    from cdr_parser.repository import CdrRepository
    from cdrkit.bus import open_bus
    from cdrkit.db import create_engine, session_factory
    from cdrkit.settings import ServiceSettings, load
    from cdrmodel import topics

    settings = settings or load(ServiceSettings)
    if settings.bus_url.startswith("memory://"):
        raise SystemExit(
            "replay --from-store needs the shared bus: set CDRFLOW_BUS_URL=kafka://… (a memory:// "
            "bus lives inside one process, so nothing would receive what this one publishes)"
        )
    engine = create_engine(settings.effective_database_url)
    bus = open_bus(settings.bus_url, sasl_password=settings.bus_password)
    try:
        await bus.start()
        await bus.ensure_topics([topics.RAW])
        repo = CdrRepository(session_factory(engine), engine.dialect.name)
        return await replay_store(
            repo.raw_pages(since, until), bus.producer, retries=retries, progress=progress
        )
    finally:
        await bus.close()
        await engine.dispose()


def write_report(path: Path, summary: Summary, item: str) -> None:
    """The summary and every failed item (``item``: "file" or "call_id") as JSON."""
    data = summary.as_dict()
    data["failures"] = [
        {item: f["item"], "reason": f["reason"], "detail": f["detail"]} for f in data["failures"]
    ]
    path.write_text(json.dumps(data, indent=2) + "\n")

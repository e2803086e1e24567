"""The spool's log: append-only segment files ``<sequence>.seg`` (20 digits, so names sort in
order) in one directory, written with group commit and fsync and never reopened for writing after
a restart; recovered at open (a torn tail is truncated), read from the head by the drainer, and
deleted segment by segment once the bus acknowledged every record in them. The delivery contract
is in the package docstring (``cdr_ingest.spool``)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from cdr_ingest.metrics import SPOOL_DRAINED, SPOOLED
from cdr_ingest.spool.codec import (
    HEADER,
    MAX_RECORD_BYTES,
    SpooledRecord,
    decode,
    encode,
    read_segment,
)
from cdrkit.files import fsync_dir
from cdrmodel.errors import Transient

__all__ = ["SEGMENT_SUFFIX", "Batch", "Spool", "SpoolFull", "SpoolStatus", "SpoolUnavailable"]

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".seg"


class SpoolFull(Transient):
    code = "spool_full"
    status = 503


class SpoolUnavailable(Transient):
    code = "spool_unavailable"
    status = 503


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int = 0  # bytes durably written
    records: int = 0  # records durably written
    acked_offset: int = 0  # bytes whose records the bus acknowledged
    acked_records: int = 0


@dataclass(frozen=True)
class Batch:
    """Records read from the head of the spool, to acknowledge with ``Spool.ack`` once sent."""

    records: list[SpooledRecord]
    segment: _Segment
    end_offset: int
    corrupt_after: bool = False  # the segment holds unreadable bytes after these records


@dataclass(frozen=True)
class SpoolStatus:
    depth: int
    bytes: int
    oldest_age_s: float
    segments: int


@dataclass
class _Pending:
    frame: bytes
    spooled_at: float
    future: asyncio.Future[None]


class Spool:
    """An append-only segment log of (key, value) records; see the module docstring."""

    def __init__(
        self, directory: Path, *, max_bytes: int, segment_bytes: int = 16 * 1024 * 1024
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._segments: deque[_Segment] = deque()
        self._times: deque[float] = deque()  # spooled_at of every durable, unacknowledged record
        self._next_seq = 1
        self._active: _Segment | None = None
        self._fd: int | None = None
        self._pending: list[_Pending] = []
        self._pending_bytes = 0
        self._writing = 0  # records of the batch being written now
        self._wake = asyncio.Event()
        self._nonempty = asyncio.Event()
        self._io = asyncio.Lock()  # one writer batch or one segment retirement at a time
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.error: str | None = None  # set when the disk refused a write: the spool is unwritable
        self.commits = 0  # fsync'd writes; with group commit, far fewer than appended records
        self._refused = False  # an append was refused for size since the last acknowledgement

    # -- life cycle ---------------------------------------------------------------------------

    async def open(self) -> Spool:
        """Create the directory, recover what a previous process left, start the writer."""
        await asyncio.to_thread(self._recover)
        if self._times:
            self._nonempty.set()
            log.warning(
                "spool %s holds %d records (%d bytes) from a previous run; draining them",
                self.directory,
                len(self._times),
                self.size_bytes,
            )
        self._writer = asyncio.create_task(self._write_loop(), name="spool-writer")
        return self

    def _recover(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        paths = sorted(
            (p for p in self.directory.iterdir() if p.name.endswith(SEGMENT_SUFFIX)),
            key=lambda p: int(p.name[: -len(SEGMENT_SUFFIX)]),
        )
        for path in paths:
            seq = int(path.name[: -len(SEGMENT_SUFFIX)])
            self._next_seq = max(self._next_seq, seq + 1)
            data = path.read_bytes()
            records, end = read_segment(data)
            if end < len(data):
                # Only the tail can be torn: segments are never appended to after a restart.
                log.warning(
                    "spool segment %s: %d bytes after offset %d are a torn or corrupt record "
                    "(a write cut short, never acknowledged); skipped and truncated",
                    path.name,
                    len(data) - end,
                    end,
                )
                with path.open("r+b") as f:
                    f.truncate(end)
                    os.fsync(f.fileno())
            if not records:
                path.unlink()
                continue
            self._segments.append(_Segment(seq, path, size=end, records=len(records)))
            self._times.extend(r.spooled_at for r in records)

    async def close(self) -> None:
        """Write what is queued, stop the writer, close the active segment."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
            self._writer = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- state --------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Durable records not yet acknowledged by the bus."""
        return len(self._times)

    @property
    def empty(self) -> bool:
        """Nothing waits: no durable record unacknowledged and no append in progress."""
        return not self._times and not self._pending and not self._writing

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def oldest_age_s(self) -> float:
        return max(0.0, time.time() - self._times[0]) if self._times else 0.0

    def status(self) -> SpoolStatus:
        return SpoolStatus(self.depth, self.size_bytes, self.oldest_age_s(), len(self._segments))

    def full(self) -> bool:
        """Refusing posts for size (or within 64 KiB of the limit)."""
        return self._refused or self.size_bytes + self._pending_bytes + 65536 > self.max_bytes

    # -- appending (group commit) -------------------------------------------------------------

    async def append(self, value: bytes, key: bytes | None = None) -> None:
        """Return once the record is durable on disk; ``SpoolFull`` / ``SpoolUnavailable``."""
        if self.error is not None:
            raise SpoolUnavailable(f"the spool is not writable ({self.error})")
        if self._closing:
            raise SpoolUnavailable("the spool is closing")
        now = time.time()
        frame = encode(SpooledRecord(value, key, now))
        if self.size_bytes + self._pending_bytes + len(frame) > self.max_bytes:
            self._refused = True
            raise SpoolFull(
                f"the spool is full ({self.size_bytes} of {self.max_bytes} bytes) and the message "
                "bus is unavailable; retry later"
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(frame, now, future))
        self._pending_bytes += len(frame)
        self._wake.set()
        # Shielded: a client that disconnects must not cancel a write other posts share.
        await asyncio.shield(future)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending:
                batch, self._pending = self._pending, []
                self._pending_bytes -= sum(len(p.frame) for p in batch)
                self._writing = len(batch)
                try:
                    async with self._io:
                        await self._write_batch(batch)
                finally:
                    self._writing = 0
            # Also right after a batch: ``close`` may have set the very wake-up this loop took
            # for the batch, and no append can follow it to set another (it waited forever).
            if self._closing and not self._pending:
                return

    async def _write_batch(self, batch: list[_Pending]) -> None:
        segment = self._active
        new = segment is None or segment.size >= self.segment_bytes
        if new:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            seq, self._next_seq = self._next_seq, self._next_seq + 1
            segment = _Segment(seq, self.directory / f"{seq:020d}{SEGMENT_SUFFIX}")
        assert segment is not None
        data = b"".join(p.frame for p in batch)
        try:
            await asyncio.to_thread(self._write_sync, segment, data, new)
        except OSError as exc:
            self._fail_batch(batch, segment, exc)
            return
        if new:
            self._active = segment
            self._segments.append(segment)
        segment.size += len(data)
        segment.records += len(batch)
        self.commits += 1
        self._times.extend(p.spooled_at for p in batch)
        self._nonempty.set()
        SPOOLED.inc(len(batch))
        for p in batch:
            if not p.future.done():
                p.future.set_result(None)

    def _write_sync(self, segment: _Segment, data: bytes, new: bool) -> None:
        if new:
            self._fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            fsync_dir(self.directory)  # the new file's name must survive a crash too
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def _fail_batch(self, batch: list[_Pending], segment: _Segment, exc: OSError) -> None:
        log.error("spool write to %s failed: %s", segment.path, exc)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._active = None  # the next write starts a fresh segment
        # The file's tail is unknown after a failed write or fsync: cut it back to what was
        # durable (or remove the new file). If even that fails, stop accepting posts (ready()
        # reports it) rather than guess what is on disk.
        try:
            if segment in self._segments:
                os.truncate(segment.path, segment.size)
            else:
                segment.path.unlink(missing_ok=True)
        except OSError as exc2:
            self.error = f"{type(exc2).__name__}: {exc2}"
        if exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT):
            self.error = f"{type(exc).__name__}: {exc}"
        failure = SpoolUnavailable(f"the spool could not write the CDR ({exc}); retry later")
        for p in batch:
            if not p.future.done():
                p.future.set_exception(failure)

    # -- draining -----------------------------------------------------------------------------

    async def wait_nonempty(self) -> None:
        await self._nonempty.wait()

    async def peek(self, *, max_records: int, max_bytes: int) -> Batch | None:
        """The oldest unacknowledged records (at least one if any), without consuming them."""
        while self._segments:
            segment = self._segments[0]
            if segment.acked_offset < segment.size:
                return await asyncio.to_thread(
                    self._read_sync,
                    segment,
                    segment.acked_offset,
                    segment.size,
                    max_records,
                    max_bytes,
                )
            if not await self._retire(segment):
                break
        if self.empty:
            self._nonempty.clear()
        return None

    @staticmethod
    def _read_sync(
        segment: _Segment, start: int, end: int, max_records: int, max_bytes: int
    ) -> Batch:
        records: list[SpooledRecord] = []
        offset = start
        with segment.path.open("rb") as f:
            f.seek(start)
            while offset < end and len(records) < max_records:
                header = f.read(HEADER.size)
                decoded = None
                if len(header) == HEADER.size:
                    length = HEADER.unpack(header)[1]
                    if length <= min(MAX_RECORD_BYTES, end - offset - HEADER.size):
                        decoded = decode(header + f.read(length))
                if decoded is None:
                    log.error(
                        "spool segment %s is corrupt at offset %d: the %d bytes after it are "
                        "kept in %s.corrupt, not sent",
                        segment.path.name,
                        offset,
                        end - offset,
                        segment.path.name,
                    )
                    return Batch(records, segment, offset, corrupt_after=True)
                record, used = decoded
                records.append(record)
                offset += used
                if offset - start >= max_bytes:
                    break
        return Batch(records, segment, offset)

    async def ack(self, batch: Batch) -> None:
        """The bus acknowledged ``batch``: forget its records, delete drained segments."""
        segment = batch.segment
        if batch.corrupt_after:
            lost = segment.records - segment.acked_records - len(batch.records)
            segment.acked_offset, segment.acked_records = segment.size, segment.records
            count = len(batch.records) + lost
            with contextlib.suppress(OSError):
                os.link(segment.path, segment.path.with_name(segment.path.name + ".corrupt"))
        else:
            segment.acked_offset = batch.end_offset
            segment.acked_records += len(batch.records)
            count = len(batch.records)
        for _ in range(count):
            self._times.popleft()
        SPOOL_DRAINED.inc(len(batch.records))
        self._refused = False
        if segment.acked_offset >= segment.size:
            await self._retire(segment)
        if self.empty:
            self._nonempty.clear()

    async def _retire(self, segment: _Segment) -> bool:
        """Delete a fully acknowledged segment (closing it first if it is being written)."""
        async with self._io:
            if segment.acked_offset < segment.size:
                return False  # the writer appended to it meanwhile
            if segment is self._active:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                self._active = None
            if self._segments and self._segments[0] is segment:
                self._segments.popleft()
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(segment.path.unlink)
        return True

"""The in-process bus's disk log (``memory://…?dir=PATH``): what makes ``make run`` durable.

Layout under ``PATH`` (one process at a time: ``PATH/lock`` is held with ``flock``)::

    topics/<topic>/meta.json                     {"partitions": N}
    topics/<topic>/<partition>/<base offset>.log  segments of length-prefixed, CRC-checked frames
    groups/<group>.offsets                        append-only "topic<TAB>partition<TAB>offset" lines

* A produced message becomes visible to consumers, and ``send`` returns, only once its frame is
  written and ``fsync``'d (group commit: every send waiting at that moment shares one write and
  one fsync per partition file, done in a worker thread so the event loop keeps serving; the
  fsyncs of the files one write touched run at the same time). A 200 from ingest therefore means
  on disk, as ``acks=all`` does on Kafka; a SIGKILL or a power cut after it loses nothing.
* Commits are appended (not fsync'd) to the group's offsets file, so they survive the process
  being killed; a commit lost to a power cut only means redelivery, which the sinks absorb. On
  load a committed offset is clamped to its partition's length.
* On start the segments are read back into memory (the torn tail of a frame a crash cut short is
  truncated away: it was never acknowledged) and the groups resume at their committed offsets.
* Retention works on whole segments: a segment whose messages the in-memory retention has all
  dropped is deleted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import json
import logging
import os
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar
from urllib.parse import quote, unquote

from cdrkit.bus.base import BusError, Message, TopicPartition
from cdrkit.files import fsync_dir

logger = logging.getLogger(__name__)

_FRAME = struct.Struct(">II")  # body length, crc32(body)
_BODY = struct.Struct(">qiH")  # timestamp ms, key length (-1: none), header count
_HNAME = struct.Struct(">H")
_HVALUE = struct.Struct(">I")
DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024
_COUNTS = {"fsyncs": 0, "writes": 0}


def write_counts() -> tuple[int, int]:
    """(group-commit writes, data fsyncs) done in this process, for the bus benchmark."""
    return _COUNTS["writes"], _COUNTS["fsyncs"]


_COMPACT_OFFSETS_BYTES = 1024 * 1024

Headers = tuple[tuple[str, bytes], ...]
# One message to write: key, value, headers, timestamp (ms).
Frame = tuple[bytes | None, bytes, Headers, int]
T = TypeVar("T")


def encode(key: bytes | None, value: bytes, headers: Headers, timestamp_ms: int) -> bytes:
    parts = [_BODY.pack(timestamp_ms, -1 if key is None else len(key), len(headers))]
    if key is not None:
        parts.append(key)
    for name, hvalue in headers:
        raw = name.encode()
        parts += [_HNAME.pack(len(raw)), raw, _HVALUE.pack(len(hvalue)), hvalue]
    parts.append(value)
    body = b"".join(parts)
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


def decode_frames(data: bytes) -> Iterator[tuple[int, bytes | None, bytes, Headers, int]]:
    """(end position, key, value, headers, timestamp) per intact frame; stops at the first torn
    or corrupt one (everything from there on was never acknowledged)."""
    pos, end = 0, len(data)
    while pos + _FRAME.size <= end:
        length, crc = _FRAME.unpack_from(data, pos)
        body_at, body_end = pos + _FRAME.size, pos + _FRAME.size + length
        if body_end > end or zlib.crc32(data[body_at:body_end]) != crc:
            return
        ts, keylen, nheaders = _BODY.unpack_from(data, body_at)
        at = body_at + _BODY.size
        key = None
        if keylen >= 0:
            key, at = data[at : at + keylen], at + keylen
        headers = []
        for _ in range(nheaders):
            (nlen,) = _HNAME.unpack_from(data, at)
            at += _HNAME.size
            name, at = data[at : at + nlen].decode(), at + nlen
            (vlen,) = _HVALUE.unpack_from(data, at)
            at += _HVALUE.size
            headers.append((name, data[at : at + vlen]))
            at += vlen
        yield body_end, key, data[at:body_end], tuple(headers), ts
        pos = body_end


@dataclass
class _Segment:
    base: int
    path: Path
    size: int


@dataclass
class _PartitionFiles:
    directory: Path
    segments: list[_Segment] = field(default_factory=list)
    fd: int = -1  # the active (last) segment, opened for append

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(frozen=True)
class Loaded:
    """One partition read back from disk: its first offset held and its messages."""

    start: int
    messages: list[Message]


def _segment_name(base: int) -> str:
    return f"{base:020d}.log"


class Journal:
    """The disk side of one durable in-process broker (see the module docstring)."""

    def __init__(self, root: Path, *, fsync: bool = True, segment_bytes: int = 0) -> None:
        self.root = root
        self.fsync = fsync
        self.segment_bytes = segment_bytes or DEFAULT_SEGMENT_BYTES
        root.mkdir(parents=True, exist_ok=True)
        (root / "topics").mkdir(exist_ok=True)
        (root / "groups").mkdir(exist_ok=True)
        self._lock_fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise BusError(
                f"the bus directory {root} is in use by another process (one cdrflow run per "
                "data dir)"
            ) from None
        self._partitions: dict[TopicPartition, _PartitionFiles] = {}
        # Fsyncs of the other files a write touched run here, beside the writer's own: a
        # flush waits for the slowest fsync instead of the sum of them (docs/performance.md).
        self._syncers: concurrent.futures.ThreadPoolExecutor | None = None
        self._group_fds: dict[str, int] = {}
        self._group_sizes: dict[str, int] = {}

    # -- loading ---------------------------------------------------------------------------------

    def topic_names(self) -> list[tuple[str, int]]:
        """(name, partitions) of every topic on disk."""
        found = []
        for entry in sorted((self.root / "topics").iterdir()):
            meta = entry / "meta.json"
            if meta.is_file():
                found.append((unquote(entry.name), int(json.loads(meta.read_text())["partitions"])))
        return found

    def create_topic(self, name: str, partitions: int) -> None:
        directory = self._topic_dir(name)
        meta = directory / "meta.json"
        if meta.is_file():
            return
        for p in range(partitions):
            (directory / str(p)).mkdir(parents=True, exist_ok=True)
        tmp = directory / "meta.json.tmp"
        tmp.write_text(json.dumps({"partitions": partitions}))
        os.replace(tmp, meta)
        self._fsync_dir(directory)
        self._fsync_dir(directory.parent)

    def load_partition(self, topic: str, partition: int) -> Loaded:
        tp = TopicPartition(topic, partition)
        files = _PartitionFiles(self._topic_dir(topic) / str(partition))
        files.directory.mkdir(parents=True, exist_ok=True)
        messages: list[Message] = []
        start: int | None = None
        paths = sorted(files.directory.glob("*.log"))
        for i, path in enumerate(paths):
            base = int(path.stem)
            if start is None:
                start = base
            data = path.read_bytes()
            good = 0
            offset = max(base, start + len(messages))
            for end, key, value, headers, ts in decode_frames(data):
                messages.append(Message(topic, partition, offset, key, value, headers, ts))
                offset += 1
                good = end
            if good < len(data):
                logger.warning(
                    "bus log %s: %d bytes after the last intact message cut off (a write the "
                    "crash interrupted; never acknowledged)",
                    path,
                    len(data) - good,
                )
                with open(path, "r+b") as fh:
                    fh.truncate(good)
                if i != len(paths) - 1:
                    # Later segments follow a gap: keep offsets consistent by dropping them.
                    for later in paths[i + 1 :]:
                        logger.error("bus log %s follows a damaged segment; removed", later)
                        later.unlink()
                    files.segments.append(_Segment(base, path, good))
                    break
            files.segments.append(_Segment(base, path, good))
        if start is None:
            start = 0
        if not files.segments:
            path = files.directory / _segment_name(start)
            path.touch()
            files.segments.append(_Segment(start, path, 0))
        files.fd = os.open(files.segments[-1].path, os.O_WRONLY | os.O_APPEND)
        self._partitions[tp] = files
        return Loaded(start, messages)

    def load_groups(self) -> dict[str, dict[TopicPartition, int]]:
        groups: dict[str, dict[TopicPartition, int]] = {}
        for path in sorted((self.root / "groups").glob("*.offsets")):
            name = unquote(path.stem)
            committed: dict[TopicPartition, int] = {}
            for line in path.read_text(errors="replace").splitlines():
                parts = line.split("\t")
                if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
                    continue  # a line the crash cut short
                committed[TopicPartition(unquote(parts[0]), int(parts[1]))] = int(parts[2])
            groups[name] = committed
            self._rewrite_offsets(name, committed)
        return groups

    # -- writing ---------------------------------------------------------------------------------

    def prepare(self, tp: TopicPartition, next_offset: int) -> _PartitionFiles:
        """The partition's files, with a fresh segment started at ``next_offset`` when the active
        one is full. Called on the event loop before the write runs in a thread."""
        files = self._partitions[tp]
        if files.segments[-1].size >= self.segment_bytes:
            path = files.directory / _segment_name(next_offset)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            files.close()
            files.fd = fd
            files.segments.append(_Segment(next_offset, path, 0))
            self._fsync_dir(files.directory)
        return files

    def write_frames(self, chunks: list[tuple[_PartitionFiles, list[Frame]]]) -> None:
        """``write`` of the messages (key, value, headers, timestamp) encoded here, in the
        worker thread, rather than on the event loop."""
        self.write([(files, b"".join([encode(*f) for f in frames])) for files, frames in chunks])

    def write(self, chunks: list[tuple[_PartitionFiles, bytes]]) -> None:
        """Write and fsync (runs in a worker thread). On failure the touched files are cut back
        to their previous size, so nothing half-written remains to be loaded."""
        before = {id(f): (f, f.segments[-1].size) for f, _ in chunks}
        _COUNTS["writes"] += 1
        try:
            for files, data in chunks:
                view = memoryview(data)
                while view:
                    view = view[os.write(files.fd, view) :]
            if self.fsync:
                self._fsync_all([files.fd for files, _size in before.values()])
        except OSError:
            for files, size in before.values():
                try:
                    os.ftruncate(files.fd, size)
                except OSError:
                    logger.exception("bus log %s: could not cut back", files.segments[-1].path)
            raise
        for files, data in chunks:
            files.segments[-1].size += len(data)

    def _fsync_all(self, fds: list[int]) -> None:
        """``fsync`` every one of ``fds``, at the same time: each file's own in a helper thread
        (the first in this one), so that the file system can commit them together. Returns once
        all are done; raises the first failure, after every fsync has ended."""
        _COUNTS["fsyncs"] += len(fds)
        if len(fds) == 1:
            os.fsync(fds[0])
            return
        if self._syncers is None:
            self._syncers = concurrent.futures.ThreadPoolExecutor(
                max_workers=8, thread_name_prefix="bus-fsync"
            )
        others = [self._syncers.submit(os.fsync, fd) for fd in fds[1:]]
        error: OSError | None = None
        try:
            os.fsync(fds[0])
        except OSError as exc:
            error = exc
        for done in others:
            failed = done.exception()
            if error is None and failed is not None:
                error = failed if isinstance(failed, OSError) else OSError(str(failed))
        if error is not None:
            raise error

    def commit(self, group: str, offsets: dict[TopicPartition, int]) -> None:
        fd = self._group_fds.get(group)
        if fd is None:
            path = self.root / "groups" / f"{quote(group, safe='')}.offsets"
            fd = self._group_fds[group] = os.open(
                path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
            )
            self._group_sizes[group] = os.fstat(fd).st_size
        data = "".join(
            f"{quote(tp.topic, safe='')}\t{tp.partition}\t{offset}\n"
            for tp, offset in offsets.items()
        ).encode()
        os.write(fd, data)
        self._group_sizes[group] += len(data)

    def maybe_compact(self, group: str, committed: dict[TopicPartition, int]) -> None:
        if self._group_sizes.get(group, 0) > _COMPACT_OFFSETS_BYTES:
            self._rewrite_offsets(group, committed)

    def _rewrite_offsets(self, group: str, committed: dict[TopicPartition, int]) -> None:
        path = self.root / "groups" / f"{quote(group, safe='')}.offsets"
        tmp = path.with_suffix(".tmp")
        data = "".join(
            f"{quote(tp.topic, safe='')}\t{tp.partition}\t{offset}\n"
            for tp, offset in sorted(committed.items())
        ).encode()
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        old = self._group_fds.pop(group, None)
        if old is not None:
            os.close(old)
        self._group_fds[group] = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._group_sizes[group] = len(data)

    def drop_below(self, tp: TopicPartition, start: int) -> None:
        """Delete the segments whose messages are all below ``start`` (never the active one)."""
        files = self._partitions.get(tp)
        if files is None:
            return
        while len(files.segments) > 1 and files.segments[1].base <= start:
            gone = files.segments.pop(0)
            gone.path.unlink(missing_ok=True)
            logger.debug("bus log %s dropped (retention)", gone.path)

    def close(self) -> None:
        if self._syncers is not None:
            self._syncers.shutdown(wait=True)
            self._syncers = None
        for files in self._partitions.values():
            files.close()
        self._partitions.clear()
        for fd in self._group_fds.values():
            os.close(fd)
        self._group_fds.clear()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def _topic_dir(self, name: str) -> Path:
        return self.root / "topics" / quote(name, safe="")

    def _fsync_dir(self, directory: Path) -> None:
        if self.fsync:
            fsync_dir(directory)


class GroupCommit(Generic[T]):
    """Batches concurrent appends into one ``flush`` (one write + fsync); ``flush`` gets the items
    in submission order and makes them visible once durable. One flush runs at a time."""

    def __init__(self, flush: Callable[[list[T]], Awaitable[None]], describe: str) -> None:
        self._flush = flush
        self._describe = describe
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, item: T) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="memory-bus-journal")
        return future

    async def _run(self) -> None:
        while self._pending:
            pending, self._pending = self._pending, []
            try:
                await self._flush([item for item, _ in pending])
            except Exception as exc:  # every waiter learns why; the next flush tries again
                logger.exception("memory bus: writing %s failed", self._describe)
                error = BusError(f"the bus log {self._describe} cannot be written: {exc}")
                for _, future in pending:
                    if not future.done():
                        future.set_exception(error)
                continue
            for _, future in pending:
                if not future.done():
                    future.set_result(None)

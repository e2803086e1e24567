"""Serving a recording's audio: the byte range to send (HTTP Range, ``cdr_recordings.ranges``),
the answer's status and headers, and the body streamed from the local file or the S3 object in
chunks (never the whole file in memory). With ``RECORDINGS_S3_REDIRECT`` an S3 recording is a
redirect to a presigned URL instead."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote

from cdr_recordings.metrics import SERVED, SERVED_BYTES
from cdr_recordings.paths import content_type, key_segment, open_local
from cdr_recordings.ranges import parse_range
from cdr_recordings.service import Located, RecordingsService
from cdrmodel.errors import NotFound

__all__ = ["CHUNK", "Playback", "playback"]

CHUNK: Final = 512 * 1024


@dataclass(frozen=True, slots=True)
class Playback:
    """What to answer: a redirect, or a status with headers and (unless HEAD or empty) a body."""

    status: int
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)
    body: AsyncIterator[bytes] | None = None
    redirect: str | None = None


async def playback(
    service: RecordingsService,
    call_id: str,
    range_header: str | None,
    *,
    download: bool,
    head: bool,
) -> Playback:
    """The answer to ``GET``/``HEAD /v1/recordings/{call_id}/audio``.

    Raises ``NotFound``/``RecordingRefused`` as ``RecordingsService.locate`` does, and
    ``RangeNotSatisfiable`` (416) for a range past the end.
    """
    found = await service.locate(call_id)
    ctype = content_type(found.row.format)
    disposition = _disposition(found) if download else None
    if found.location == "s3" and service.settings.s3_redirect:
        assert service.s3 is not None
        assert found.key is not None
        url = await service.s3.presign(
            found.key, ctype, disposition, service.settings.s3_presign_expires_s
        )
        SERVED.labels("s3", "redirect").inc()
        return Playback(302, ctype, {"Cache-Control": "no-store"}, redirect=url)
    try:
        span = parse_range(range_header, found.size)
    except Exception:
        SERVED.labels(found.location, "unsatisfiable").inc()
        raise
    first, last = span if span is not None else (0, found.size - 1)
    length = last - first + 1 if found.size else 0
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(length),
        "Cache-Control": "private, max-age=300",
        "X-Recording-Location": found.location,
    }
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{found.size}"
    if disposition:
        headers["Content-Disposition"] = disposition
    status = 206 if span is not None else 200
    if head:
        SERVED.labels(found.location, "head").inc()
        return Playback(status, ctype, headers)
    SERVED.labels(found.location, "partial" if span is not None else "full").inc()
    if length == 0:
        return Playback(status, ctype, headers)
    if found.location == "local":
        body = await _local_body(found, first, length)
    else:
        body = await _s3_body(service, found, first, last)
    return Playback(status, ctype, headers, body=body)


def _disposition(found: Located) -> str:
    name = (found.row.relative_path or found.row.recording_path).rsplit("/", 1)[-1]
    ascii_name = key_segment(name, f"{key_segment(found.row.call_id, 'recording')}")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


async def _local_body(found: Located, first: int, length: int) -> AsyncIterator[bytes]:
    assert found.path is not None
    try:
        fd = await asyncio.to_thread(open_local, found.path)
    except FileNotFoundError as exc:
        raise NotFound(f"the recording of call {found.row.call_id} has just gone") from exc

    async def chunks() -> AsyncIterator[bytes]:
        position, remaining = first, length
        try:
            while remaining > 0:
                data = await asyncio.to_thread(os.pread, fd, min(CHUNK, remaining), position)
                if not data:
                    break  # truncated under us: the client sees a short body
                position += len(data)
                remaining -= len(data)
                SERVED_BYTES.labels("local").inc(len(data))
                yield data
        finally:
            os.close(fd)

    return chunks()


async def _s3_body(
    service: RecordingsService, found: Located, first: int, last: int
) -> AsyncIterator[bytes]:
    assert service.s3 is not None
    assert found.key is not None
    body = await service.s3.get_range(found.key, first, last)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for data in body.iter_chunks(CHUNK):
                SERVED_BYTES.labels("s3").inc(len(data))
                yield data
        finally:
            with contextlib.suppress(Exception):
                body.close()

    return chunks()

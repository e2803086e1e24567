"""The recordings service's HTTP routes."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from cdr_recordings.deps import ServiceDep
from cdr_recordings.metrics import SERVED, SERVED_BYTES
from cdr_recordings.paths import content_type, key_segment, open_local
from cdr_recordings.ranges import parse_range
from cdr_recordings.service import Located, RecordingsService
from cdrkit.auth import READ_OR_QUERY
from cdrmodel.errors import NotFound

router = APIRouter(tags=["recordings"], dependencies=[READ_OR_QUERY])

CHUNK = 512 * 1024


@router.get("/v1/recordings/{call_id}")
async def recording(call_id: str, service: ServiceDep) -> dict[str, Any]:
    """Where a call's recording is (local or s3), its size, format, age and archive state."""
    now = datetime.now(UTC)
    found = await service.locate(call_id, now)
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
        "age_s": int(service.age(row, now).total_seconds()),
        "state": row.state,
        "recording_path": row.recording_path,
        "s3_key": found.key,
        "archived_at": row.archived_at.isoformat() if row.archived_at else None,
        "audio_url": f"/v1/recordings/{quote(row.call_id, safe='')}/audio",
    }


@router.api_route("/v1/recordings/{call_id}/audio", methods=["GET", "HEAD"])
async def audio(
    call_id: str, request: Request, service: ServiceDep, download: bool = False
) -> Response:
    """The audio, with HTTP Range (206); ``?download=1`` as an attachment."""
    found = await service.locate(call_id)
    ctype = content_type(found.row.format)
    disposition = _disposition(found) if download else None
    head = request.method == "HEAD"
    if found.location == "s3" and service.settings.s3_redirect:
        assert service.s3 is not None
        assert found.key is not None
        url = await service.s3.presign(
            found.key, ctype, disposition, service.settings.s3_presign_expires_s
        )
        SERVED.labels("s3", "redirect").inc()
        return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    try:
        span = parse_range(request.headers.get("range"), found.size)
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
        return Response(status_code=status, headers=headers, media_type=ctype)
    SERVED.labels(found.location, "partial" if span is not None else "full").inc()
    if length == 0:
        return Response(status_code=status, headers=headers, media_type=ctype)
    if found.location == "local":
        body = await _local_body(found, first, length)
    else:
        body = await _s3_body(service, found, first, last)
    return StreamingResponse(body, status_code=status, headers=headers, media_type=ctype)


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

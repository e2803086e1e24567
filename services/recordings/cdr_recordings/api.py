"""The recordings service's HTTP routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from cdr_recordings.deps import ServiceDep
from cdr_recordings.paths import CONTENT_TYPES
from cdr_recordings.schemas import RecordingOut
from cdr_recordings.streaming import playback
from cdrkit.auth import READ_OR_QUERY
from cdrkit.openapi import errors, media

router = APIRouter(tags=["recordings"], dependencies=[READ_OR_QUERY])


_AUDIO = sorted({*CONTENT_TYPES.values(), "application/octet-stream"})
_AUDIO_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: media("The whole recording", *_AUDIO, binary=True),
    206: media("The part of it the Range asked for", *_AUDIO, binary=True),
    302: {"description": "A presigned URL of the archived copy (RECORDINGS_S3_REDIRECT)"},
    **errors(416),
}


@router.get("/v1/recordings/{call_id}", response_model=RecordingOut)
async def recording(call_id: str, service: ServiceDep) -> dict[str, Any]:
    """Where a call's recording is (local or s3), its size, format, age and archive state."""
    return await service.describe(call_id)


@router.get("/v1/recordings/{call_id}/audio", response_class=Response, responses=_AUDIO_ANSWERS)
@router.head(
    "/v1/recordings/{call_id}/audio",
    response_class=Response,
    responses=_AUDIO_ANSWERS,
    operation_id="audio_head",
)
async def audio(
    call_id: str, request: Request, service: ServiceDep, download: bool = False
) -> Response:
    """The audio, with HTTP Range (206); ``?download=1`` as an attachment."""
    play = await playback(
        service,
        call_id,
        request.headers.get("range"),
        download=download,
        head=request.method == "HEAD",
    )
    if play.redirect is not None:
        return RedirectResponse(play.redirect, status_code=play.status, headers=play.headers)
    if play.body is None:
        return Response(status_code=play.status, headers=play.headers, media_type=play.media_type)
    return StreamingResponse(
        play.body, status_code=play.status, headers=play.headers, media_type=play.media_type
    )

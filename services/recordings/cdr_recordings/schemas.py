"""The recordings API's answers."""

from __future__ import annotations

from typing import Literal

from cdrkit.openapi import Answer


class RecordingOut(Answer):
    call_id: str
    location: Literal["local", "s3"]
    fallback: bool
    size: int
    format: str
    content_type: str
    tenant: str | None
    start_time: str
    age_s: int
    state: str
    recording_path: str
    s3_key: str | None
    archived_at: str | None
    audio_url: str

"""The stats API's answers."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from cdrkit.openapi import Answer


class AlertOut(Answer):
    id: int
    kind: str
    text: str
    labels: dict[str, str]
    bucket: int = Field(description="the bucket's start, epoch seconds")
    created_at: str


class AlertPage(Answer):
    items: list[AlertOut]


class Deleted(Answer):
    deleted: int


class PluginsOut(Answer):
    plugins: list[str]
    errors: dict[str, str] = Field(description="plugin name -> why it failed to load")


class Bucket(Answer):
    start: int
    end: int
    group: dict[str, Any]
    metrics: dict[str, Any]


class BucketPage(Answer):
    """(Documentation: the route writes this JSON itself, for speed.)"""

    buckets: list[Bucket]

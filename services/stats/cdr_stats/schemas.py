"""The stats API's answers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class AlertOut(BaseModel):
    id: int
    kind: str
    text: str
    labels: dict[str, str]
    bucket: int = Field(description="the bucket's start, epoch seconds")
    created_at: str


class AlertPage(BaseModel):
    items: list[AlertOut]


class Deleted(BaseModel):
    deleted: int


class PluginsOut(BaseModel):
    plugins: list[str]
    errors: dict[str, str] = Field(description="plugin name -> why it failed to load")


class Bucket(BaseModel):
    start: int
    end: int
    group: dict[str, Any]
    metrics: dict[str, Any]


class BucketPage(BaseModel):
    """(Documentation: the route writes this JSON itself, for speed.)"""

    buckets: list[Bucket]

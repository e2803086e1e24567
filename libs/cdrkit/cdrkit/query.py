"""Parsing of query-string values shared by every API: instants and opaque cursors."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from cdrmodel.errors import InvalidInput


def parse_instant(value: str, name: str) -> datetime:
    """Epoch seconds or ISO 8601 with a timezone (ARCHITECTURE §5)."""
    text = value.strip()
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError as exc:
        raise InvalidInput(
            f"{name}={value!r} is neither epoch seconds nor an ISO 8601 time"
        ) from exc
    if parsed.tzinfo is None:
        raise InvalidInput(f"{name}={value!r} has no timezone; add Z or an offset like +00:00")
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+14:00 is before datetime.min in UTC
        raise InvalidInput(f"{name}={value!r} is outside the range of representable times") from exc


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("the cursor is not one this API issued") from exc
    if not isinstance(values, list):
        raise InvalidInput("the cursor is not one this API issued")
    return values

"""Pexip Infinity's conventions that both the puller (ingest) and the mapping (parser) read."""

from __future__ import annotations

from datetime import UTC, datetime


def pexip_time(value: object, name: str, error: type[Exception] = ValueError) -> datetime | None:
    """A Pexip history time (naive ISO 8601, meaning UTC) or an epoch float, as aware UTC;
    ``None`` for a missing one. Anything else raises ``error`` with a sentence naming ``name``."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise error(f"{name} {value!r} is out of range") from exc
    if not isinstance(value, str):
        raise error(f"{name} is not a time: {value!r}")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise error(f"{name} {value!r} is not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)  # Pexip speaks UTC without saying so
    return parsed.astimezone(UTC)

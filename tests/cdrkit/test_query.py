"""Query-string instants: every malformed or out-of-range value is a clear 4xx, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cdrkit.query import parse_instant
from cdrmodel.errors import InvalidInput


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", datetime(1970, 1, 1, tzinfo=UTC)),
        ("2024-02-29T21:57:13Z", datetime(2024, 2, 29, 21, 57, 13, tzinfo=UTC)),
        ("2024-03-01T00:30:00+03:00", datetime(2024, 2, 29, 21, 30, tzinfo=UTC)),
    ],
)
def test_epoch_and_iso_instants(value: str, expected: datetime) -> None:
    assert parse_instant(value, "since") == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("yesterday", "neither epoch seconds nor an ISO 8601 time"),
        ("2024-02-29T21:57:13", "has no timezone"),
        ("0001-01-01T00:00:00+14:00", "outside the range"),
        ("9999-12-31T23:59:59-14:00", "outside the range"),
    ],
)
def test_bad_instants_are_invalid_input(value: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        parse_instant(value, "since")

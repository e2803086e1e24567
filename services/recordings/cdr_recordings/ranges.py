"""HTTP Range (RFC 9110 §14) for one byte range: ``bytes=a-b``, ``bytes=a-``, ``bytes=-n``.

A header that is not a single byte range (another unit, several ranges, a malformed one) is
ignored, as the RFC allows, and the whole file is sent with 200. A well-formed range that starts
past the end (or asks for the last 0 bytes, or anything of an empty file) is unsatisfiable: 416
with ``Content-Range: bytes */<size>``.
"""

from __future__ import annotations

import re

from cdrmodel.errors import InvalidInput

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class RangeNotSatisfiable(InvalidInput):
    code = "range_not_satisfiable"
    status = 416

    def __init__(self, detail: str, size: int) -> None:
        super().__init__(detail)
        self.headers = {"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"}


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` byte positions (inclusive) to send, ``None`` for the whole file, or
    ``RangeNotSatisfiable``."""
    if not header:
        return None
    match = _RANGE.match(header)
    if match is None:
        return None
    first_s, last_s = match.groups()
    if not first_s and not last_s:
        return None
    if not first_s:  # suffix: the last n bytes
        suffix = int(last_s)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(
                f"the range {header.strip()!r} selects no byte of a {size}-byte recording", size
            )
        return max(size - suffix, 0), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if last_s and last < first:
        return None  # invalid: ignored
    if first >= size:
        raise RangeNotSatisfiable(
            f"the range {header.strip()!r} starts at or past the end of the {size}-byte recording",
            size,
        )
    return first, min(last, size - 1)

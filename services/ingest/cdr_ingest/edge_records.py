"""``POST /v1/edge/records`` and ``/v1/edge/checkin`` bodies from an edge agent. Pure: bytes in,
checked values out; a whole-body problem raises the ``InvalidInput`` of its 4xx answer.

A batch is taken whole or not at all: if any record is wrong the answer is a 400 that names each
refused record (``rejected: [{seq, error, detail}]``) and nothing of the batch is stored; the
agent moves the named lines to its ``rejected`` table and sends the rest again.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cdr_ingest.documents import JSON_TYPES, media_type
from cdrmodel.edge import DEVICE_ID, SerialLine
from cdrmodel.errors import InvalidInput, NotWellFormed, UnsupportedMediaType

MAX_LINE_BYTES = 4096
MAX_SEQ = 2**63 - 1
# Plausible capture times: after 2000-01-01 and before 2200-01-01 (epoch seconds).
CAPTURED_RANGE = (946_684_800.0, 7_258_118_400.0)


class InvalidRecords(InvalidInput):
    code = "invalid_records"

    def __init__(self, detail: str, rejected: list[dict[str, object]]) -> None:
        super().__init__(detail)
        self.rejected = rejected


@dataclass(frozen=True, slots=True)
class EdgeBatch:
    device: str
    pbx_timezone: str
    source: str
    lines: list[SerialLine]
    repeated: int  # records whose seq came earlier in the same batch (counted as duplicates)


def _json_object(body: bytes, content_type: str | None) -> dict[str, Any]:
    mtype = media_type(content_type)
    if mtype not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"content type {mtype or '(none)'!r} is not supported; send application/json"
        )
    try:
        value = json.loads(body.decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise NotWellFormed(f"the body is not UTF-8 JSON: {str(exc)[:200]}") from exc
    if not isinstance(value, dict):
        raise InvalidInput("the body must be a JSON object")
    return value


def _device(data: dict[str, Any]) -> str:
    device = data.get("device")
    if not isinstance(device, str) or not DEVICE_ID.fullmatch(device):
        raise InvalidInput("device must be 1-64 letters, digits, '.', '_', ':' or '-'")
    return device


def _timezone(data: dict[str, Any]) -> str:
    tz = data.get("pbx_timezone", "UTC")
    if not isinstance(tz, str) or len(tz) > 64:
        raise InvalidInput("pbx_timezone must be an IANA time zone name")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"pbx_timezone {tz!r} is not an IANA time zone name") from None
    return tz


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _check_record(item: object) -> tuple[int, float, bytes]:
    """(seq, captured_at, line) or ``ValueError`` with the reason."""
    if not isinstance(item, dict):
        raise ValueError("a record must be an object {seq, captured_at, line_b64}")
    captured = _number(item.get("captured_at"))
    if captured is None or not CAPTURED_RANGE[0] <= captured < CAPTURED_RANGE[1]:
        raise ValueError("captured_at must be epoch seconds between 2000 and 2200")
    encoded = item.get("line_b64")
    if not isinstance(encoded, str):
        raise ValueError("line_b64 must be a base64 string")
    try:
        line = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("line_b64 is not valid base64") from None
    if not line.strip():
        raise ValueError("the line is empty")
    if len(line) > MAX_LINE_BYTES:
        raise ValueError(f"the line is {len(line)} bytes; at most {MAX_LINE_BYTES}")
    return int(item["seq"]), captured, line


def decode_records(body: bytes, content_type: str | None, max_records: int) -> EdgeBatch:
    data = _json_object(body, content_type)
    device, tz = _device(data), _timezone(data)
    source = data.get("source", "")
    if not isinstance(source, str) or len(source) > 32:
        raise InvalidInput("source must be a name of at most 32 characters")
    records = data.get("records")
    if not isinstance(records, list) or not records:
        raise InvalidInput("records must be a non-empty list")
    if len(records) > max_records:
        raise InvalidInput(
            f"{len(records)} records in one batch; at most {max_records} (EDGE_BATCH_SIZE)"
        )
    seqs = [r.get("seq") if isinstance(r, dict) else None for r in records]
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= MAX_SEQ for s in seqs):
        # A record without a usable seq cannot be named, so the batch is refused as a whole.
        raise InvalidInput("every record needs a seq: a positive integer below 2**63")
    lines: list[SerialLine] = []
    rejected: list[dict[str, object]] = []
    seen: set[int] = set()
    repeated = 0
    for item in records:
        try:
            seq, captured, line = _check_record(item)
        except ValueError as exc:
            rejected.append({"seq": item["seq"], "error": "invalid_record", "detail": str(exc)})
            continue
        if seq in seen:
            repeated += 1
            continue
        seen.add(seq)
        lines.append(SerialLine(device, seq, tz, source, captured, line))
    if rejected:
        raise InvalidRecords(
            f"{len(rejected)} of {len(records)} records are invalid; none was stored: "
            f"{rejected[0]['detail']} (seq {rejected[0]['seq']})",
            rejected,
        )
    return EdgeBatch(device, tz, source, lines, repeated)


CHECKIN_NUMBERS = ("queue_depth", "oldest_age_s", "rejected", "uptime_s", "checkin_interval_s")
CHECKIN_TEXTS = {"version": 64, "source": 32, "source_state": 16, "source_error": 500}


def decode_checkin(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The check-in, reduced to the known fields with checked types (unknown ones dropped)."""
    data = _json_object(body, content_type)
    out: dict[str, Any] = {"device": _device(data), "pbx_timezone": _timezone(data)}
    for name, limit in CHECKIN_TEXTS.items():
        value = data.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise InvalidInput(f"{name} must be a text of at most {limit} characters")
        out[name] = value
    for name in (*CHECKIN_NUMBERS, "last_line_at"):
        value = data.get(name)
        number = _number(value)
        if value is not None and (number is None or number < 0 or number > 1e12):
            raise InvalidInput(f"{name} must be a non-negative number")
        out[name] = number
    full = data.get("queue_full", False)
    if not isinstance(full, bool):
        raise InvalidInput("queue_full must be true or false")
    out["queue_full"] = full
    return out

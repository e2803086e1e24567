"""One spooled record, framed and CRC-checked: the spool's on-disk format.

A segment file is a sequence of records::

    magic   2 bytes   b"\\xcd\\x5f"
    length  u32 BE    bytes of the body
    crc     u32 BE    CRC-32 of the length field and the body
    body    length    spooled_at_ms (i64 BE), key length (i32 BE, -1: no key), key, value

A record cut short by a crash (the last one of a segment; its append was never acknowledged) fails
the length or CRC check: it is reported, truncated away and skipped, never read as data.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = [
    "HEADER",
    "MAGIC",
    "MAX_RECORD_BYTES",
    "SpooledRecord",
    "decode",
    "encode",
    "read_segment",
]

MAGIC = b"\xcd\x5f"
HEADER = struct.Struct(">2sII")  # magic, body length, crc32(length + body)
_LENGTH = struct.Struct(">I")
_BODY_HEAD = struct.Struct(">qi")  # spooled_at_ms, key length (-1: no key)
MAX_RECORD_BYTES = 1 << 30  # a length above this is a torn or corrupt header, never a record


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    value: bytes
    key: bytes | None
    spooled_at: float  # Unix time, seconds


def encode(record: SpooledRecord) -> bytes:
    """One framed record, ready to append."""
    key = record.key
    body = (
        _BODY_HEAD.pack(int(record.spooled_at * 1000), -1 if key is None else len(key))
        + (key or b"")
        + record.value
    )
    length = _LENGTH.pack(len(body))
    return MAGIC + length + _LENGTH.pack(zlib.crc32(body, zlib.crc32(length))) + body


def _decode_body(body: bytes) -> SpooledRecord:
    spooled_at_ms, key_len = _BODY_HEAD.unpack_from(body)
    start = _BODY_HEAD.size
    if key_len < 0:
        return SpooledRecord(body[start:], None, spooled_at_ms / 1000)
    return SpooledRecord(
        body[start + key_len :], body[start : start + key_len], spooled_at_ms / 1000
    )


def decode(data: bytes, offset: int = 0) -> tuple[SpooledRecord, int] | None:
    """The record at ``offset`` and the offset after it; None if it is torn or corrupt."""
    end = offset + HEADER.size
    if end > len(data):
        return None
    magic, length, crc = HEADER.unpack_from(data, offset)
    if magic != MAGIC or length > MAX_RECORD_BYTES or end + length > len(data):
        return None
    body = data[end : end + length]
    if zlib.crc32(body, zlib.crc32(_LENGTH.pack(length))) != crc or length < _BODY_HEAD.size:
        return None
    return _decode_body(body), end + length


def read_segment(data: bytes) -> tuple[list[SpooledRecord], int]:
    """Every intact record of a segment, and the offset where the intact part ends."""
    records: list[SpooledRecord] = []
    offset = 0
    while offset < len(data):
        decoded = decode(data, offset)
        if decoded is None:
            break
        record, offset = decoded
        records.append(record)
    return records, offset

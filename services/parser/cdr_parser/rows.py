"""Table rows of the CDR store: a CDR and its raw payload as rows and back, and why a row
cannot be stored (a text longer than its column, a NUL character, a call longer than the
configured maximum), checked before the insert so one such record is a dead letter instead of
a batch that fails on every redelivery."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import cramjam
from sqlalchemy import Table

from cdr_parser.models import cdrs, pexip_conferences, raw_payloads
from cdrmodel import CDR, RawEnvelope

__all__ = [
    "CDR_TEXT",
    "CONFERENCE_TEXT",
    "RAW_TEXT",
    "call_too_long",
    "cdr_row",
    "fit_text",
    "pack_raw",
    "raw_row",
    "row_to_cdr",
    "stored_payload",
    "unstorable",
]


def cdr_row(cdr: CDR, stored_at: datetime) -> dict[str, Any]:
    # The validated fields as they are (a shallow copy: model_dump would copy every value, and
    # the row is only read); enums as their text.
    row = dict(cdr.__dict__)
    for key in ("leg", "direction", "disposition"):
        if row[key] is not None:
            # _value_: what .value (a Python-level descriptor, ~20 bytecodes) returns
            row[key] = str(row[key]._value_)
    row["stored_at"] = stored_at
    return row


def raw_row(env: RawEnvelope, call_id: str, stored_at: datetime) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "envelope_id": env.id,
        "kind": env.kind._value_,  # .value's text, without its descriptor
        "content_type": env.content_type,
        "sha256": env.sha256,
        "payload": env.payload,
        "payload_ref": env.payload_ref,
        "received_at": env.received_at,
        "stored_at": stored_at,
    }


def pack_raw(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` (a ``raw_row``) as the store writes it: the payload text lz4-compressed into
    ``payload_lz4`` (migration 0008). Done once per row, at the store: the checks before it
    (``unstorable``) read the text."""
    text = row.get("payload")
    if text is None:  # claim-checked: the object store holds it (every row has every key)
        return {**row, "payload_lz4": None}
    # surrogatepass: a lone surrogate (JSON's "\ud800", decoded) round-trips instead of failing
    # the batch on every redelivery.
    packed = cramjam.lz4.compress_block(text.encode("utf-8", "surrogatepass"))
    return {**row, "payload": None, "payload_lz4": bytes(packed)}


def stored_payload(row: Any) -> str | None:
    """The payload text of a stored ``raw_payloads`` row: ``payload`` (rows before migration
    0008), else ``payload_lz4`` decompressed; None for a claim-checked payload."""
    if row.payload is not None:
        return str(row.payload)
    if row.payload_lz4 is None:
        return None
    return bytes(cramjam.lz4.decompress_block(row.payload_lz4)).decode("utf-8", "surrogatepass")


def _text_limits(table: Table) -> list[tuple[str, int | None]]:
    return [(c.name, getattr(c.type, "length", None)) for c in table.c if c.type.python_type is str]


CDR_TEXT = _text_limits(cdrs)
RAW_TEXT = _text_limits(raw_payloads)
CONFERENCE_TEXT = _text_limits(pexip_conferences)


def unstorable(row: dict[str, Any], limits: list[tuple[str, int | None]]) -> str | None:
    """Why the store cannot take ``row`` as it is, or None: a text longer than its column
    (PostgreSQL enforces the lengths) or holding a NUL character (PostgreSQL text refuses it).
    Checked before the insert, so one such record is a dead letter instead of a batch that fails
    on every redelivery and stops the consumer."""
    for name, length in limits:
        value = row.get(name)
        if not isinstance(value, str):
            continue
        if length is not None and len(value) > length:
            return f"{name} is {len(value)} characters long; the store holds at most {length}"
        if "\x00" in value:
            return f"{name} holds a NUL character, which the store cannot hold"
    return None


def fit_text(value: str | None, length: int | None = None) -> str | None:
    """A dead letter's value made storable: cut to its column, NUL characters replaced."""
    return None if value is None else value[:length].replace("\x00", "\ufffd")


def call_too_long(cdr: CDR, max_s: float) -> str | None:
    """Why ``cdr`` is refused as longer than ``CDRFLOW_MAX_CALL_DURATION_S``, or None. Its span
    (start → end) and the durations the document states are all checked: no real call lasts a
    week, and 1950 → 2026 would not even fit the store's integer seconds."""
    duration_s, billsec_s = cdr.duration_s, cdr.billsec_s
    start, end = cdr.start_time, cdr.end_time
    span = None if start is None or end is None else int((end - start).total_seconds())
    if (
        (duration_s is None or duration_s <= max_s)
        and (billsec_s is None or billsec_s <= max_s)
        and (span is None or span <= max_s)
    ):
        return None  # the common case, without the dict and the loop that name the culprit
    spans = {"duration_s": duration_s, "billsec_s": billsec_s}
    if span is not None:
        spans["start → end"] = span
    for what, seconds in spans.items():
        if seconds is not None and seconds > max_s:
            return (
                f"the call lasts {seconds} s ({what}), longer than CDRFLOW_MAX_CALL_DURATION_S "
                f"({max_s:.0f} s)"
            )
    return None


def row_to_cdr(row: Any) -> CDR:
    data = dict(row._mapping)
    data.pop("stored_at", None)
    return CDR.model_validate(data)

"""Edge agent batches and check-ins → ``cdr.raw`` envelopes, with ``/v1/cdr``'s durability.

Each line becomes one ``pbx.serial`` envelope whose id and call id derive from (device, seq), so
a batch posted twice is the same envelopes twice and the CDR store keeps one CDR. The answer
comes only once every envelope of the batch is durable (bus acknowledgement, or the spool's
fsync). ``duplicates`` counts the lines this ingest process had already made durable (its recent
index, see ``dedupe.py``); those are not published again. A check-in becomes one
``edge.checkin`` envelope keyed by the device: the parser keeps the device registry.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from cdr_ingest.edge_records import EdgeBatch
from cdr_ingest.service import IngestService
from cdrkit.bus import Record
from cdrmodel import Origin, PayloadKind, RawEnvelope, sha256_hex
from cdrmodel.edge import SerialLine
from cdrmodel.envelope import ENVELOPE_VERSION


def line_envelope(line: SerialLine, received_at: str, source: dict[str, str]) -> bytes:
    """The ``pbx.serial`` envelope of one line, serialised as ``RawEnvelope.to_json`` would
    (``tests/edge/test_units.py`` checks it): built by hand because pydantic's construction and
    dump were 40 % of a batch's cost, and every field is ingest's own or checked already."""
    payload = line.to_json()
    call_id = line.call_id
    return json.dumps(
        {
            "v": ENVELOPE_VERSION,
            "id": call_id.replace("-", ""),
            "kind": PayloadKind.PBX_SERIAL.value,
            "received_at": received_at,
            "source": source,
            "content_type": "application/json",
            "call_id": call_id,
            "payload": payload,
            "sha256": sha256_hex(payload),
        },
        separators=(",", ":"),
    ).encode()


async def accept_batch(ingest: IngestService, batch: EdgeBatch, origin: Origin) -> tuple[int, int]:
    """Publish the batch's new lines; return (accepted, duplicates) once they are durable."""
    received_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    source = origin.model_copy(update={"node": batch.device}).model_dump(exclude_none=True)
    fresh: list[tuple[bytes | None, str, Record]] = []
    duplicates = batch.repeated
    for line in batch.lines:
        call_id = line.call_id
        key = ingest.recent.key(call_id, line.to_json())
        if ingest.recent.get(key) is not None:
            duplicates += 1
            continue
        value = line_envelope(line, received_at, source)
        fresh.append((key, call_id.replace("-", ""), Record(value, call_id.encode())))
    await ingest.publish_records([record for _, _, record in fresh])
    for key, envelope_id, _ in fresh:
        ingest.recent.add(key, envelope_id)
    return len(fresh), duplicates


async def accept_checkin(ingest: IngestService, checkin: dict[str, Any], origin: Origin) -> str:
    """Publish the check-in (stamped with ingest's clock); return its envelope id."""
    now = datetime.now(UTC)
    payload = json.dumps({**checkin, "received_at": now.isoformat()}, separators=(",", ":"))
    envelope = RawEnvelope(
        id=uuid.uuid4().hex,
        kind=PayloadKind.EDGE_CHECKIN,
        received_at=now,
        source=origin.model_copy(update={"node": checkin["device"]}),
        content_type="application/json",
        # No key: the registry keeps the newest check-in by received_at, whatever the order.
        payload=payload,
        sha256=sha256_hex(payload),
    )
    await ingest.publish_many([envelope])
    return envelope.id

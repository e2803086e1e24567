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
from cdrmodel import Origin, PayloadKind, RawEnvelope, sha256_hex


async def accept_batch(ingest: IngestService, batch: EdgeBatch, origin: Origin) -> tuple[int, int]:
    """Publish the batch's new lines; return (accepted, duplicates) once they are durable."""
    now = datetime.now(UTC)
    origin = origin.model_copy(update={"node": batch.device})
    fresh: list[tuple[bytes | None, RawEnvelope]] = []
    duplicates = batch.repeated
    for line in batch.lines:
        call_id = line.call_id
        payload = line.to_json()
        key = ingest.recent.key(call_id, payload)
        if ingest.recent.get(key) is not None:
            duplicates += 1
            continue
        # Built without validation: every field is ingest's own, checked by decode_records.
        envelope = RawEnvelope.model_construct(
            id=call_id.replace("-", ""),
            kind=PayloadKind.PBX_SERIAL,
            received_at=now,
            source=origin,
            content_type="application/json",
            call_id=call_id,
            payload=payload,
            sha256=sha256_hex(payload),
        )
        fresh.append((key, envelope))
    await ingest.publish_many([env for _, env in fresh])
    for key, env in fresh:
        ingest.recent.add(key, env.id)
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

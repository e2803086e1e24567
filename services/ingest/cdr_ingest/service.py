"""Accept a posted CDR: decode, check, wrap in a raw envelope, publish, answer.

A post is answered 200 only after the bus acknowledged the envelope (``acks=all`` on Kafka), so a
2xx always means "durable". Anything else is a 4xx (the input is wrong: the switch should keep the
CDR in its error directory) or a 503 (try again).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from cdr_ingest.dedupe import RecentAccepts
from cdr_ingest.documents import Document, decode_post
from cdr_ingest.metrics import BODY_BYTES, BUS_ERRORS, DUPLICATES
from cdr_ingest.settings import IngestSettings
from cdrkit.bus import BusError, Producer
from cdrmodel import Origin, RawEnvelope, sha256_hex, topics
from cdrmodel.errors import Transient

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Accepted:
    id: str
    call_id: str | None
    status: str = "accepted"


def leg_hint(uuid_param: str | None) -> tuple[str | None, bool | None]:
    """mod_xml_cdr posts ``?uuid=a_<uuid>`` for A-legs when prefix-a-leg is on."""
    if not uuid_param:
        return None, None
    value = uuid_param.strip()
    if value.startswith("a_"):
        return value[2:] or None, True
    return value or None, None


class IngestService:
    def __init__(self, settings: IngestSettings, producer: Producer) -> None:
        self.settings = settings
        self.producer = producer
        self.recent = RecentAccepts(settings.dedupe_window)

    async def accept(
        self, body: bytes, content_type: str | None, uuid_param: str | None, origin: Origin
    ) -> Accepted:
        doc = decode_post(body, content_type)
        call_id, a_leg = leg_hint(uuid_param)
        call_id = call_id or doc.call_id()
        seen_key = self.recent.key(call_id, doc.text)  # same call, same bytes: see dedupe.py
        if (first_id := self.recent.get(seen_key)) is not None:
            DUPLICATES.inc()
            return Accepted(first_id, call_id, "duplicate")
        envelope = self.envelope(doc, call_id, a_leg, origin)
        await self.publish(envelope)
        self.recent.add(seen_key, envelope.id)
        BODY_BYTES.observe(len(body))
        return Accepted(envelope.id, envelope.call_id)

    def envelope(
        self, doc: Document, call_id: str | None, a_leg: bool | None, origin: Origin
    ) -> RawEnvelope:
        return RawEnvelope(
            id=uuid.uuid4().hex,
            kind=doc.kind,
            received_at=datetime.now(UTC),
            source=origin,
            content_type=doc.content_type,
            call_id=call_id,
            a_leg=a_leg,
            payload=doc.text,
            sha256=sha256_hex(doc.text),
        )

    async def publish(self, envelope: RawEnvelope) -> None:
        key = envelope.call_id.encode() if envelope.call_id else None
        try:
            await asyncio.wait_for(
                self.producer.send(topics.RAW, envelope.to_json(), key=key),
                self.settings.publish_timeout_s,
            )
        except (BusError, TimeoutError) as exc:
            BUS_ERRORS.inc()
            log.warning("bus did not acknowledge envelope %s: %s", envelope.id, exc)
            raise Transient(
                "the CDR could not be stored right now (message bus unavailable); retry later"
            ) from exc

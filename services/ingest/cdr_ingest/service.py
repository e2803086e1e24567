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

from cdr_ingest.documents import Document, decode_post
from cdr_ingest.metrics import BODY_BYTES, BUS_ERRORS, CLAIM_CHECK_BYTES, CLAIM_CHECKS
from cdr_ingest.settings import IngestSettings
from cdrkit.bus import BusError, Producer
from cdrkit.objects import ObjectStore, object_key
from cdrmodel import Origin, RawEnvelope, sha256_hex, topics
from cdrmodel.errors import Transient

log = logging.getLogger(__name__)

# Object keys of claim-checked raw payloads: cdr-raw/YYYY/MM/DD/<envelope id>.
CLAIM_NAMESPACE = "cdr-raw"


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
    def __init__(
        self, settings: IngestSettings, producer: Producer, store: ObjectStore | None = None
    ) -> None:
        self.settings = settings
        self.producer = producer
        # Without a store (some tests, tools) every payload travels inline.
        self.store = store

    async def accept(
        self, body: bytes, content_type: str | None, uuid_param: str | None, origin: Origin
    ) -> Accepted:
        doc = decode_post(body, content_type)
        call_id, a_leg = leg_hint(uuid_param)
        envelope = await self.seal(doc, call_id or doc.call_id(), a_leg, origin)
        await self.publish(envelope)
        BODY_BYTES.observe(len(body))
        return Accepted(envelope.id, envelope.call_id)

    def envelope(
        self,
        doc: Document,
        call_id: str | None,
        a_leg: bool | None,
        origin: Origin,
        *,
        envelope_id: str | None = None,
        received_at: datetime | None = None,
        payload_ref: str | None = None,
        sha256: str | None = None,
    ) -> RawEnvelope:
        """The envelope for ``doc``: inline, or pointing at ``payload_ref`` (see ``seal``)."""
        return RawEnvelope(
            id=envelope_id or uuid.uuid4().hex,
            kind=doc.kind,
            received_at=received_at or datetime.now(UTC),
            source=origin,
            content_type=doc.content_type,
            call_id=call_id,
            a_leg=a_leg,
            payload=None if payload_ref else doc.text,
            payload_ref=payload_ref,
            sha256=sha256 or sha256_hex(doc.text),
        )

    async def seal(
        self, doc: Document, call_id: str | None, a_leg: bool | None, origin: Origin
    ) -> RawEnvelope:
        """The envelope to publish, claim-checked when the payload is over the inline maximum.

        A claim-checked payload is written (durably) to the object store *before* its envelope
        exists, so a published ``payload_ref`` always points at a stored object. The key is built
        from ingest's own envelope id and the date, never from anything the switch sent. If the
        publish then fails the object stays behind (the switch's retry writes a new one); it is
        never referenced and never deleted here, because a timed-out publish may still land.
        """
        if self.store is None:
            return self.envelope(doc, call_id, a_leg, origin)
        data = doc.text.encode()
        if len(data) <= self.settings.inline_max_bytes:
            return self.envelope(doc, call_id, a_leg, origin)
        envelope_id = uuid.uuid4().hex
        received_at = datetime.now(UTC)
        ref = await self.store.put(object_key(CLAIM_NAMESPACE, envelope_id, received_at), data)
        CLAIM_CHECKS.inc()
        CLAIM_CHECK_BYTES.inc(len(data))
        return self.envelope(
            doc,
            call_id,
            a_leg,
            origin,
            envelope_id=envelope_id,
            received_at=received_at,
            payload_ref=ref,
            sha256=sha256_hex(data),
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

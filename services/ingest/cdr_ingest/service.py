"""Accept a posted CDR: decode, check, wrap in a raw envelope, publish, answer.

A post is answered 200 only once the envelope is durable: acknowledged by the bus (``acks=all`` on
Kafka) within ``INGEST_SPOOL_AFTER_S``, or else fsync'd to the local spool (``cdr_ingest.spool``),
which a drainer ships to the bus in order once it is back. Anything else is a 4xx (the input is
wrong: the switch should keep the CDR in its error directory) or a 503 (try again: the bus is away
and the spool is full or unwritable).

While the spool holds anything, new posts go behind it (appended to the spool, not sent to the
bus), so every post of one call reaches ``cdr.raw`` in the order it was accepted and no post waits
``INGEST_SPOOL_AFTER_S`` on a bus that is known to be away. Once the drainer has emptied the
spool, posts go straight to the bus again.

A send that timed out may still reach Kafka later (the producer keeps retrying it) while its
envelope is also in the spool: the envelope then arrives twice, with the same id and call id, and
the parser stores it once (idempotent on the call id).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from cdr_ingest.call_event_intake import ValidEvent
from cdr_ingest.dedupe import RecentAccepts
from cdr_ingest.documents import Document, decode_post
from cdr_ingest.metrics import BODY_BYTES, BUS_ERRORS, CLAIM_CHECK_BYTES, CLAIM_CHECKS, DUPLICATES
from cdr_ingest.settings import IngestSettings
from cdr_ingest.spool.drainer import Drainer
from cdr_ingest.spool.segment_log import Spool, SpoolFull
from cdrkit.bus import BusError, Producer, Record
from cdrkit.objects import ObjectStore, object_key
from cdrmodel import Origin, PayloadKind, RawEnvelope, sha256_hex, topics
from cdrmodel.envelope import inline_envelope_json
from cdrmodel.errors import Transient

log = logging.getLogger(__name__)

# Object keys of claim-checked raw payloads: cdr-raw/YYYY/MM/DD/<envelope id>.
CLAIM_NAMESPACE = "cdr-raw"


@dataclass(frozen=True, slots=True)
class Accepted:
    id: str
    call_id: str | None
    status: str = "accepted"


def new_id() -> str:
    """``uuid.uuid4().hex``: 16 bytes of ``os.urandom`` with the version (4) and variant bits
    set as ``uuid.UUID(bytes=..., version=4)`` sets them, without building the UUID object
    (~2 µs against ~8 per post on the one event loop: docs/performance.md, ninth round)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    return raw.hex()


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
        self,
        settings: IngestSettings,
        producer: Producer,
        *,
        store: ObjectStore | None = None,
        spool: Spool | None = None,
    ) -> None:
        self.settings = settings
        self.producer = producer
        # Without a store (some tests, tools) every payload travels inline.
        self.store = store
        self.spool = spool  # None: no spool, a post the bus does not acknowledge is a 503
        self.drainer: Drainer | None = None  # set by the app; shown by GET /v1/spool
        self.recent = RecentAccepts(settings.dedupe_window)

    async def accept(
        self, body: bytes, content_type: str | None, uuid_param: str | None, origin: Origin
    ) -> Accepted:
        doc = decode_post(body, content_type)
        call_id, a_leg = leg_hint(uuid_param)
        call_id = call_id or doc.call_id()
        data = doc.text.encode()
        digest = hashlib.sha256(data).digest()  # the dedupe key's and the envelope's
        seen_key = self.recent.key_of(call_id, digest)  # same call, same bytes: see dedupe.py
        if (first_id := self.recent.get(seen_key)) is not None:
            DUPLICATES.inc()
            return Accepted(first_id, call_id, "duplicate")
        if self.inline(len(data)):
            # The envelope's JSON written directly, as RawEnvelope.to_json would (issue 15).
            envelope_id = new_id()
            value = inline_envelope_json(
                id=envelope_id,
                kind=doc.kind,
                received_at=datetime.now(UTC),
                source=origin,
                content_type=doc.content_type,
                call_id=call_id,
                a_leg=a_leg,
                payload=doc.text,
                sha256=digest.hex(),
            )
        else:
            envelope = await self.seal(doc, call_id, a_leg, origin, sha256=digest.hex())
            envelope_id, value = envelope.id, envelope.to_json()
        await self.publish_value(envelope_id, value, call_id)
        self.recent.add(seen_key, envelope_id)
        BODY_BYTES.observe(len(body))
        return Accepted(envelope_id, call_id)

    def inline(self, size: int) -> bool:
        """A payload of ``size`` UTF-8 bytes travels inside its envelope (else it is
        claim-checked: ``seal``)."""
        return self.store is None or size <= self.settings.inline_max_bytes

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
        self,
        doc: Document,
        call_id: str | None,
        a_leg: bool | None,
        origin: Origin,
        *,
        sha256: str | None = None,
    ) -> RawEnvelope:
        """The envelope to publish, claim-checked when the payload is over the inline maximum.

        A claim-checked payload is written (durably) to the object store *before* its envelope
        exists, so a published ``payload_ref`` always points at a stored object. The key is built
        from ingest's own envelope id and the date, never from anything the switch sent. If the
        publish then fails the object stays behind (the switch's retry writes a new one); it is
        never referenced and never deleted here, because a timed-out publish may still land.

        ``sha256``: the hex digest of ``doc.text`` when the caller has it already.
        """
        if self.store is None:
            return self.envelope(doc, call_id, a_leg, origin, sha256=sha256)
        data = doc.text.encode()
        if self.inline(len(data)):
            return self.envelope(doc, call_id, a_leg, origin, sha256=sha256)
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
            sha256=sha256 or sha256_hex(data),
        )

    async def publish(self, envelope: RawEnvelope) -> None:
        """Return once the envelope is durable (bus acknowledgement or spool fsync)."""
        await self.publish_value(envelope.id, envelope.to_json(), envelope.call_id)

    async def publish_value(self, envelope_id: str, value: bytes, call_id: str | None) -> None:
        """``publish`` of an envelope already serialised (``value``), keyed by its call id."""
        key = call_id.encode() if call_id else None
        spool = self.spool
        if spool is None:
            await self._send(envelope_id, value, key, self.settings.publish_timeout_s)
            return
        if not spool.empty:
            try:
                await spool.append(value, key)  # behind the spool: see the module docstring
                return
            except SpoolFull:
                pass  # the bus may be back while the drainer catches up: try it directly
        try:
            await self._send(envelope_id, value, key, self.settings.spool_after_s)
            return
        except Transient:
            pass
        await spool.append(value, key)  # SpoolFull / SpoolUnavailable: a 503

    async def _send(
        self, envelope_id: str, value: bytes, key: bytes | None, timeout_s: float
    ) -> None:
        try:
            # asyncio.timeout, not wait_for: no task per post (issue 15).
            async with asyncio.timeout(timeout_s):
                await self.producer.send(topics.RAW, value, key=key)
        except (BusError, TimeoutError) as exc:
            BUS_ERRORS.inc()
            log.warning("bus did not acknowledge envelope %s: %s", envelope_id, exc)
            raise Transient(
                "the CDR could not be stored right now (message bus unavailable); retry later"
            ) from exc

    async def accept_events(self, events: list[ValidEvent], origin: Origin) -> list[RawEnvelope]:
        """Publish one ``call.event`` envelope per valid record, keyed by its call id (both halves
        of a call land in one partition); return once every one of them is durable.

        The same durability as ``accept``: the whole list is sent to the bus as one batch and, if
        the bus does not acknowledge it within ``INGEST_SPOOL_AFTER_S``, spooled. A batch that
        was partly acknowledged and then spooled arrives partly twice: the parser's pairing
        ignores exact duplicates.
        """
        envelopes = [
            await self.seal(
                Document(v.text, PayloadKind.CALL_EVENT, "application/json"),
                v.event.call_id,
                None,
                origin,
            )
            for v in events
        ]
        await self.publish_many(envelopes)
        return envelopes

    async def accept_records(
        self, records: list[tuple[PayloadKind, str, str]], origin: Origin
    ) -> list[RawEnvelope]:
        """Publish one envelope per (kind, record id, JSON text), keyed by the record id (the
        CDR store is idempotent on it); return once every one is durable (as ``accept_events``).
        """
        envelopes = [
            await self.seal(Document(text, kind, "application/json"), record_id, None, origin)
            for kind, record_id, text in records
        ]
        await self.publish_many(envelopes)
        return envelopes

    async def publish_many(self, envelopes: list[RawEnvelope]) -> None:
        """``publish`` for several envelopes at once (one bus round trip, one spool fsync)."""
        if not envelopes:
            return
        await self.publish_records(
            [Record(e.to_json(), e.call_id.encode() if e.call_id else None) for e in envelopes]
        )

    async def publish_records(self, records: list[Record]) -> None:
        """``publish_many`` for envelopes already serialised (``Record.value`` is the envelope's
        JSON, ``Record.key`` its call id)."""
        if not records:
            return
        spool = self.spool
        if spool is None:
            await self._send_many(records, self.settings.publish_timeout_s)
            return
        if spool.empty:
            try:
                await self._send_many(records, self.settings.spool_after_s)
                return
            except Transient:
                pass
        # Behind a non-empty spool, or the bus did not answer: appended concurrently, so the
        # spool's group commit makes them durable with one fsync (order within a post is free:
        # pairing does not depend on it).
        await asyncio.gather(*(spool.append(r.value, r.key) for r in records))

    async def _send_many(self, records: list[Record], timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self.producer.send_many(topics.RAW, records)
        except (BusError, TimeoutError) as exc:
            BUS_ERRORS.inc()
            log.warning("bus did not acknowledge %d event envelopes: %s", len(records), exc)
            raise Transient(
                "the records could not be stored right now (message bus unavailable); retry later"
            ) from exc

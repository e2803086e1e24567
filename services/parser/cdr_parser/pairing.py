"""Pairing call start/end halves (ARCHITECTURE §6) into one CDR. Pure: no I/O.

Halves arrive duplicated and in any order (an end before its start is normal). The pairing state
is one row per (call id, type) in ``call_event_halves``, written in the same transaction as the
batch's CDRs (``CdrRepository.store_batch(events=…)``), so a crash never leaves a call paired
without its CDR nor a CDR without its halves marked paired. ``resolve`` decides, for the halves of
one batch in batch order and the state rows already stored for their call ids:

- a half whose (call id, type) is stored with the same digest (type, instant, call id, numbers)
  is a duplicate: nothing changes. If its call is already paired, the CDR is published again
  (at-least-once: the batch that paired it may have crashed before publishing);
- a half whose (call id, type) is stored with a different digest contradicts it: dead letter
  ``contradictory_start`` / ``contradictory_end`` (the first one stays);
- a new half whose partner is stored but which would end the call before it starts: dead letter
  ``end_before_start`` (the partner stays, pending);
- likewise one that would make the call longer than ``CDRFLOW_MAX_CALL_DURATION_S`` (7 days by
  default): dead letter ``call_too_long``;
- a new half whose partner is stored: the call is paired, both rows are marked ``paired_at`` and
  kept (so a late duplicate is recognised as one, never as a contradiction), and one CDR is
  emitted: ``source="call.event"``, the caller's own ``call_id``, answered, leg a,
  duration = billsec = end - start;
- a new half alone is stored and waits (``GET /v1/events/pending``).

Rejected halves never change the state, so re-processing a batch (redelivery) rejects them again
under the same dead-letter key and pairs the rest the same way: the outcome is repeat-safe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cdrmodel import CDR, Disposition, Leg, RawEnvelope
from cdrmodel.call_events import CallEvent, EventType

SOURCE = "call.event"


@dataclass(frozen=True, slots=True)
class Half:
    """One stored half of a call (a row of ``call_event_halves``)."""

    call_id: str
    type: EventType
    event_id: str
    event_time: datetime
    source: str | None
    destination: str | None
    digest: str
    envelope_id: str
    payload: str  # the record as sent
    received_at: datetime
    paired_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> Half:
        data = dict(row._mapping)
        data.pop("stored_at", None)
        data["type"] = EventType(data["type"])
        return cls(**data)

    def to_row(self, stored_at: datetime) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "type": self.type.value,
            "event_id": self.event_id,
            "event_time": self.event_time,
            "source": self.source,
            "destination": self.destination,
            "digest": self.digest,
            "envelope_id": self.envelope_id,
            "payload": self.payload,
            "received_at": self.received_at,
            "stored_at": stored_at,
            "paired_at": self.paired_at,
        }


@dataclass(frozen=True, slots=True)
class Incoming:
    """A consumed half: ``index`` is its position in the batch (to dead-letter it)."""

    index: int
    event: CallEvent
    env: RawEnvelope
    payload: str

    def half(self) -> Half:
        ev = self.event
        return Half(
            call_id=ev.call_id,
            type=ev.type,
            event_id=ev.id,
            event_time=ev.timestamp,
            source=ev.source,
            destination=ev.destination,
            digest=ev.digest(),
            envelope_id=self.env.id,
            payload=self.payload,
            received_at=self.env.received_at,
        )


@dataclass(frozen=True, slots=True)
class Rejection:
    incoming: Incoming
    error: str  # contradictory_start | contradictory_end | end_before_start | call_too_long
    reason: str


@dataclass
class Resolution:
    inserts: list[Half] = field(default_factory=list)  # new rows (some already paired)
    newly_paired: list[Half] = field(default_factory=list)  # stored rows to mark paired
    # Every call paired by, or seen complete in, this batch → its CDR (to publish).
    cdrs: dict[str, CDR] = field(default_factory=dict)
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)  # call id → raw payload row
    new_calls: list[str] = field(default_factory=list)  # paired by this batch (to store)
    rejections: list[Rejection] = field(default_factory=list)
    duplicates: int = 0
    waiting: int = 0  # new halves stored without their partner


Key = tuple[str, EventType]


def _other(kind: EventType) -> EventType:
    return EventType.END if kind is EventType.START else EventType.START


def _describe(half: Half) -> str:
    text = f"id {half.event_id}, {half.event_time.isoformat()}"
    if half.type is EventType.START:
        text += f", {half.source} → {half.destination}"
    return text


DEFAULT_MAX_DURATION_S = 7 * 86400


def resolve(
    incoming: Sequence[Incoming],
    stored: dict[Key, Half],
    now: datetime,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
) -> Resolution:
    """Apply a batch's halves, in order, to the stored state (see the module docstring). A pair
    longer than ``max_duration_s`` is refused like one that ends before it starts: the half
    that would complete it is rejected (a dead letter), its partner keeps waiting."""
    state = dict(stored)
    res = Resolution()
    new_keys: list[Key] = []
    for item in incoming:
        half = item.half()
        key: Key = (half.call_id, half.type)
        known = state.get(key)
        if known is not None:
            if known.digest != half.digest:
                res.rejections.append(
                    Rejection(
                        item,
                        f"contradictory_{half.type.value}",
                        f"call {half.call_id!r} already has a different {half.type.value} "
                        f"({_describe(known)}); this one ({_describe(half)}) contradicts it "
                        "and was not used",
                    )
                )
                continue
            res.duplicates += 1
            partner = state.get((half.call_id, _other(half.type)))
            if known.paired_at is not None and partner is not None:
                _emit(res, known, partner)
            continue
        partner = state.get((half.call_id, _other(half.type)))
        if partner is None:
            state[key] = half
            new_keys.append(key)
            continue
        start, end = (half, partner) if half.type is EventType.START else (partner, half)
        if end.event_time < start.event_time:
            res.rejections.append(
                Rejection(
                    item,
                    "end_before_start",
                    f"call {half.call_id!r} would end ({end.event_time.isoformat()}) before it "
                    f"starts ({start.event_time.isoformat()}); the {half.type.value} record "
                    f"(id {half.event_id}) was not used",
                )
            )
            continue
        seconds = (end.event_time - start.event_time).total_seconds()
        if seconds > max_duration_s:
            res.rejections.append(
                Rejection(
                    item,
                    "call_too_long",
                    f"call {half.call_id!r} would last {seconds:.0f} s "
                    f"({start.event_time.isoformat()} → {end.event_time.isoformat()}), longer "
                    f"than CDRFLOW_MAX_CALL_DURATION_S ({max_duration_s:.0f} s); the "
                    f"{half.type.value} record (id {half.event_id}) was not used",
                )
            )
            continue
        half = replace(half, paired_at=now)
        state[key] = half
        new_keys.append(key)
        if partner.paired_at is None and (partner.call_id, partner.type) in stored:
            res.newly_paired.append(partner)
        partner = replace(partner, paired_at=now)
        state[(partner.call_id, partner.type)] = partner
        new_call = _emit(res, half, partner)
        res.new_calls.append(new_call)
    res.inserts = [state[k] for k in new_keys]
    res.waiting = sum(1 for h in res.inserts if h.paired_at is None)
    return res


def _emit(res: Resolution, one: Half, two: Half) -> str:
    start, end = (one, two) if one.type is EventType.START else (two, one)
    cdr = build_cdr(start, end)
    res.cdrs[cdr.call_id] = cdr
    res.raw[cdr.call_id] = raw_row(start, end)
    return cdr.call_id


def build_cdr(start: Half, end: Half) -> CDR:
    """The CDR of a paired call; deterministic in its two halves, so a re-emitted CDR is equal
    to the first one."""
    seconds = int((end.event_time - start.event_time).total_seconds())
    return CDR(
        call_id=start.call_id,
        source=SOURCE,
        leg=Leg.A,
        caller_number=start.source,
        callee_number=start.destination,
        start_time=start.event_time,
        answer_time=start.event_time,  # a start/end pair reports a completed call
        end_time=end.event_time,
        duration_s=seconds,
        billsec_s=seconds,
        disposition=Disposition.ANSWERED,
        extra={"start_id": start.event_id, "end_id": end.event_id},
        received_at=max(start.received_at, end.received_at),
    )


def raw_row(start: Half, end: Half) -> dict[str, Any]:
    """The call's raw payload: the two records as sent, as a JSON list ``[start, end]``."""
    payload = f"[{start.payload},{end.payload}]"
    last = end if end.received_at >= start.received_at else start
    return {
        "call_id": start.call_id,
        "envelope_id": last.envelope_id,
        "kind": SOURCE,
        "content_type": "application/json",
        "sha256": hashlib.sha256(payload.encode()).hexdigest(),
        "payload": payload,
        "payload_ref": None,
        "received_at": last.received_at,
    }


# What the parser gives the repository: the halves of a batch and a callback that turns the
# resolution into rows (CDRs, raw payloads, dead letters) stored in the same transaction.
Rows = list[dict[str, Any]]
Settle = Callable[[Resolution], tuple[Rows, Rows, Rows]]  # CDR, raw payload, dead-letter rows


@dataclass
class EventWork:
    incoming: list[Incoming]
    now: datetime
    settle: Settle
    resolution: Resolution | None = None  # set by the repository, inside the transaction
    max_duration_s: float = DEFAULT_MAX_DURATION_S

    @property
    def call_ids(self) -> list[str]:
        return sorted({i.event.call_id for i in self.incoming})

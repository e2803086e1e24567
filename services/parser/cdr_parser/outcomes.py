"""What one raw envelope becomes in the parser: a CDR, a call start/end half to pair, a Pexip
conference, an edge check-in, a raw payload kept without a call (a HiPath ring notice), or a
failure with its reason (a dead letter). Pure: no I/O; ``ParserService`` stores the outcomes of a
batch in one transaction."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cdr_parser import pexip
from cdr_parser.devices import checkin_row
from cdr_parser.dispatch import Parsed, map_envelope
from cdr_parser.hipath import RingNotice
from cdr_parser.metrics import MAP_SECONDS
from cdr_parser.rows import CONFERENCE_TEXT, call_too_long, unstorable
from cdrmodel import CDR, PayloadKind, RawEnvelope
from cdrmodel.call_events import CallEvent, parse_event_json
from cdrmodel.errors import InvalidInput

__all__ = [
    "Checkin",
    "Conference",
    "Event",
    "Failure",
    "Outcome",
    "RawOnly",
    "conference_link",
    "outcome_of",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Failure:
    stage: str
    error: str
    reason: str


@dataclass(frozen=True, slots=True)
class RawOnly:
    """Kept as a raw payload, but no call: a HiPath ring notice (``hipath.RingNotice``)."""

    call_id: str


@dataclass(frozen=True, slots=True)
class Checkin:
    """An edge agent's check-in: a row of the device registry (``cdr_parser.devices``)."""

    row: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Event:
    """A consumed call start/end half, to be paired (not mapped alone)."""

    event: CallEvent
    payload: str


def event_outcome(env: RawEnvelope, payload: str | None) -> Event | Failure:
    text = env.payload if env.payload is not None else payload
    if text is None:
        return Failure("map", "unmappable", f"the payload {env.payload_ref} was not fetched")
    try:
        event = parse_event_json(text)
    except InvalidInput as exc:
        return Failure("map", exc.code, exc.detail)
    if env.call_id is not None and env.call_id != event.call_id:
        return Failure(
            "map",
            "call_id_mismatch",
            f"the envelope's call id {env.call_id!r} is not the record's {event.call_id!r}",
        )
    return Event(event, text)


@dataclass(frozen=True, slots=True)
class Conference:
    """A Pexip conference record: stored in ``pexip_conferences``, not a CDR."""

    row: dict[str, Any]


def conference_outcome(
    env: RawEnvelope, payload: str | None, now: datetime
) -> Conference | Failure:
    text = env.payload if env.payload is not None else payload
    if text is None:
        return Failure("map", "unmappable", f"the payload {env.payload_ref} was not fetched")
    try:
        row = pexip.conference_row(text, env.call_id, now)
    except InvalidInput as exc:
        return Failure("map", exc.code, exc.detail)
    problem = unstorable(row, CONFERENCE_TEXT)
    if problem is not None:
        return Failure("map", "unstorable", f"the conference cannot be stored: {problem}")
    return Conference(row)


Outcome = CDR | Event | Conference | RawOnly | Checkin | Failure


def conference_link(cdr: CDR) -> dict[str, Any] | None:
    conference_id = cdr.extra.get("conference_id") if cdr.source == pexip.SOURCE else None
    if (
        isinstance(conference_id, str)
        and 0 < len(conference_id) <= 128
        and "\x00" not in conference_id
    ):
        return {"call_id": cdr.call_id, "conference_id": conference_id}
    return None


def outcome_of(
    env: RawEnvelope,
    payload: str | None,
    max_call_duration_s: float,
    parsed: Parsed | None = None,
) -> Outcome:
    """What ``env`` becomes (``payload``: its claim-checked payload, fetched and verified;
    ``parsed``: its XML document's parse done ahead, ``dispatch.map_envelope``).

    Never raises for a bad record: a record that cannot be mapped is a ``Failure`` with its
    reason (a mapper bug on hostile input included), so no single message stops the topic."""
    if env.kind is PayloadKind.CALL_EVENT:
        return event_outcome(env, payload)
    if env.kind is PayloadKind.PEXIP_CONFERENCE:
        return conference_outcome(env, payload, datetime.now(UTC))
    started = time.perf_counter()
    try:
        if env.kind is PayloadKind.EDGE_CHECKIN:
            return Checkin(checkin_row(env, env.payload or payload or ""))
        cdr = map_envelope(env, payload, parsed)
    except RingNotice as notice:
        return RawOnly(notice.call_id or env.call_id or env.id)
    except InvalidInput as exc:
        return Failure("map", exc.code, exc.detail)
    except Exception as exc:  # a mapper bug on hostile input must not stop the topic
        log.exception("mapping envelope %s failed unexpectedly", env.id)
        return Failure("map", "mapper_error", f"{type(exc).__name__}: {exc}")
    MAP_SECONDS.observe(time.perf_counter() - started)
    too_long = call_too_long(cdr, max_call_duration_s)
    if too_long is not None:
        return Failure("map", "call_too_long", too_long)
    return cdr

"""From a raw envelope to a CDR: pick the mapper for the envelope's kind. Pure: no I/O.

A claim-checked envelope (``payload_ref``) is mapped with the payload the caller fetched and
verified (``ParserService`` does that, concurrently for a batch).
"""

from __future__ import annotations

from lxml import etree

from cdr_parser import freeswitch, hipath, pexip
from cdrmodel import CDR, PayloadKind, RawEnvelope
from cdrmodel.errors import UnmappableRecord

# A document's parse done ahead: its root element, or what the parse raised.
Parsed = etree._Element | BaseException


def map_envelope(env: RawEnvelope, payload: str | None = None, parsed: Parsed | None = None) -> CDR:
    """Map ``env`` (its inline payload, or ``payload`` for a claim check).

    ``parsed``: for a FreeSWITCH XML envelope, what ``freeswitch.parse_xml`` made of its text
    already (``cdr_parser.ahead``: the document parsed in a worker thread), its tree or the
    exception it raised, which is raised here as if the parse had happened now.

    Raises ``InvalidInput`` (never anything else on purpose) when it cannot map.
    """
    text = env.payload if env.payload is not None else payload
    if text is None:
        raise UnmappableRecord(
            f"the claim-checked payload {env.payload_ref} was not fetched before mapping"
        )
    hints = {
        "received_at": env.received_at,
        "call_id_hint": env.call_id,
        "a_leg_hint": env.a_leg,
        "origin_host": env.source.node,
    }
    if env.kind is PayloadKind.FREESWITCH_XML:
        if parsed is None:
            parsed = freeswitch.parse_xml(text)
        elif isinstance(parsed, BaseException):
            raise parsed
        return freeswitch.map_xml(parsed, **hints)  # type: ignore[arg-type]
    if env.kind is PayloadKind.FREESWITCH_JSON:
        return freeswitch.map_json(freeswitch.parse_json(text), **hints)  # type: ignore[arg-type]
    if env.kind is PayloadKind.PBX_SERIAL:
        # A ring notice raises hipath.RingNotice: kept as a raw line, no CDR (ParserService).
        return hipath.map_payload(text, received_at=env.received_at, call_id_hint=env.call_id)
    if env.kind is PayloadKind.PEXIP_PARTICIPANT:
        return pexip.map_participant(text, env.received_at)
    if env.kind is PayloadKind.CALL_EVENT:
        # Half a call: ParserService pairs it with its other half (cdr_parser.pairing).
        raise UnmappableRecord("a call start/end record is paired with its other half, not mapped")
    raise UnmappableRecord(f"no mapper for payload kind {env.kind.value!r} yet")

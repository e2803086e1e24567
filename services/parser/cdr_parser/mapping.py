"""From a raw envelope to a CDR: pick the mapper for the envelope's kind."""

from __future__ import annotations

from cdr_parser import freeswitch
from cdrmodel import CDR, PayloadKind, RawEnvelope
from cdrmodel.errors import UnmappableRecord


def map_envelope(env: RawEnvelope) -> CDR:
    """Raises ``InvalidInput`` (never anything else on purpose) when it cannot map."""
    if env.payload is None:
        raise UnmappableRecord("claim-checked payloads (payload_ref) are not supported yet")
    hints = {
        "received_at": env.received_at,
        "call_id_hint": env.call_id,
        "a_leg_hint": env.a_leg,
        "origin_host": env.source.node,
    }
    if env.kind is PayloadKind.FREESWITCH_XML:
        return freeswitch.map_xml(freeswitch.parse_xml(env.payload), **hints)  # type: ignore[arg-type]
    if env.kind is PayloadKind.FREESWITCH_JSON:
        return freeswitch.map_json(freeswitch.parse_json(env.payload), **hints)  # type: ignore[arg-type]
    raise UnmappableRecord(f"no mapper for payload kind {env.kind.value!r} yet")

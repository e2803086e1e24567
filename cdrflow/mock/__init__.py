"""The built-in mock call feed: realistic FreeSWITCH mod_xml_cdr documents for the demo feed,
the tests and the benchmarks.

``draw`` picks a call (outcome, carrier, tenant, numbers, timeline), ``render`` writes the
document the switch would post for it, ``feed`` posts them to ingest at a steady rate.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from cdrflow.mock.draw import Call
from cdrflow.mock.render import render_cdr

__all__ = ["generate_cdr"]


def generate_cdr(
    rng: random.Random, *, now: datetime | None = None, size_bytes: int | None = None
) -> tuple[str, str]:
    """One call leg as FreeSWITCH's mod_xml_cdr would post it: ``(leg uuid, XML text)``.

    Mostly A-legs, about one in seven a B-leg with an ``<originator>`` profile. The call ends
    within the minute before ``now`` (default: the current time). ``size_bytes`` pads the
    document with a long ``<app_log>`` (an IVR loop) to about that many UTF-8 bytes. Natural
    documents are 6-11 KB; for a smaller target the optional parts (SDP, RTP statistics, the
    dialplan echo in ``<callflow>``) are left out, down to about 5-9 KB.
    """
    now = now if now is not None else datetime.now(UTC)
    call = Call.draw(rng, now)
    return call.leg_uuid, render_cdr(call, rng, size_bytes)

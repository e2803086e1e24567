"""The edge agent's wire contract: device ids, the per-line call id, the ``pbx.serial`` payload.

An edge agent (``cdrflow edge``) numbers every line it captures with a per-device sequence; ingest
wraps each line in a ``pbx.serial`` envelope whose payload is the JSON object ``SerialLine``
describes, and the parser maps it. The call id of a line is a UUIDv5 of (device, seq), so the
same line sent twice is the same call everywhere (envelope, CDR, raw payload).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from dataclasses import dataclass

DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
EDGE_NAMESPACE = uuid.UUID("6f0c2a52-54b7-4c53-9a51-7d0e3c0f4e10")


_NAMESPACE_BYTES = EDGE_NAMESPACE.bytes


def edge_call_id(device: str, seq: int) -> str:
    """``str(uuid.uuid5(EDGE_NAMESPACE, f"{device}/{seq}"))``, built without the UUID object:
    ingest computes one per line of every batch."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{device}/{seq}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class SerialLine:
    """One captured line: the payload of a ``pbx.serial`` envelope (``to_json``/``from_json``)."""

    device: str
    seq: int
    pbx_timezone: str
    source: str
    captured_at: float  # epoch seconds on the agent's clock
    line: bytes  # exactly as captured (framing bytes and the line end removed)

    @property
    def call_id(self) -> str:
        return edge_call_id(self.device, self.seq)  # not cached: slots; callers keep it

    def to_json(self) -> str:
        return json.dumps(
            {
                "device": self.device,
                "seq": self.seq,
                "pbx_timezone": self.pbx_timezone,
                "source": self.source,
                "captured_at": self.captured_at,
                "line_b64": base64.b64encode(self.line).decode(),
                # for a reader of GET /v1/cdrs/{id}/raw; line_b64 is the exact bytes
                "line": self.line.decode("latin-1"),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> SerialLine:
        """``ValueError`` (or ``KeyError``/``TypeError``) when the payload is not one."""
        data = json.loads(text)
        return cls(
            device=str(data["device"]),
            seq=int(data["seq"]),
            pbx_timezone=str(data["pbx_timezone"]),
            source=str(data["source"]),
            captured_at=float(data["captured_at"]),
            line=base64.b64decode(data["line_b64"], validate=True),
        )

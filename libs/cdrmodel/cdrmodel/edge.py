"""The edge agent's wire contract: device ids, the per-line call id, the ``pbx.serial`` payload.

An edge agent (``cdrflow edge``) numbers every line it captures with a per-device sequence; ingest
wraps each line in a ``pbx.serial`` envelope whose payload is the JSON object ``SerialLine``
describes, and the parser maps it. The call id of a line is a UUIDv5 of (device, seq), so the
same line sent twice is the same call everywhere (envelope, CDR, raw payload).
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass

DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
EDGE_NAMESPACE = uuid.UUID("6f0c2a52-54b7-4c53-9a51-7d0e3c0f4e10")


def edge_call_id(device: str, seq: int) -> str:
    return str(uuid.uuid5(EDGE_NAMESPACE, f"{device}/{seq}"))


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
        return edge_call_id(self.device, self.seq)

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

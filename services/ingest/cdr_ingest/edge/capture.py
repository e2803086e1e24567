"""Framing: bytes from the port → raw lines.

HiPath frames its output with NUL/DLE/STX/ETX and XON/XOFF (DC1/DC3) bytes; they are dropped.
Lines end at CR or LF; blank lines are skipped. Every other line, garbage included (a baud-rate
mismatch prints garbage), is kept exactly as received: the parser decides what it means.
"""

from __future__ import annotations

import re

FRAMING = bytes([0x00, 0x10, 0x02, 0x03, 0x11, 0x13])
_DROP = bytes.maketrans(b"", b"")
_EOL = re.compile(rb"[\r\n]")
# A line this long without an end is cut here (a line-less stream must not grow without bound).
MAX_LINE = 4096


class LineSplitter:
    """Feed it chunks in arrival order; it returns the complete lines they finish."""

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._partial + chunk.translate(_DROP, FRAMING)
        parts = _EOL.split(data)
        self._partial = parts.pop()
        lines = [p for p in parts if p.strip()]
        while len(self._partial) >= MAX_LINE:
            lines.append(self._partial[:MAX_LINE])
            self._partial = self._partial[MAX_LINE:]
        return lines

    def flush(self) -> list[bytes]:
        """The unfinished last line, when the stream ends (a PBX that closes its connection)."""
        rest, self._partial = self._partial, b""
        return [rest] if rest.strip() else []

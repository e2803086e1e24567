"""A batch's FreeSWITCH XML documents parsed in a worker thread, ahead of their mapping.

libxml2 parses a document from memory with the GIL released (lxml), so in one process the parse
runs on the machine's second core while the event loop goes on with everything else; the mapping
that reads the tree stays on the loop, in batch order. What the parse makes of a document (its
tree, or the ``NotWellFormed``/``UnsafeDocument``/``UnmappableRecord`` it raises) is handed to
``dispatch.map_envelope``, which raises that exception where the parse would have raised it, so
every verdict and reason is the same (docs/performance.md, seventh round, h7allinone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from cdr_parser import freeswitch
from cdr_parser.dispatch import Parsed
from cdrmodel import PayloadKind, RawEnvelope

__all__ = ["CHUNK_CHARS", "ParsedAhead", "parse_all"]

# At most this much document text is handed to the thread at once; at most two chunks' trees
# exist at once (the one being mapped and the next, parsing).
CHUNK_CHARS = 2 * 1024 * 1024


def parse_all(texts: Sequence[str]) -> list[Parsed]:
    """``freeswitch.parse_xml`` of each text, in order: its root, or the exception it raised."""
    out: list[Parsed] = []
    for text in texts:
        try:
            out.append(freeswitch.parse_xml(text))
        except Exception as exc:  # raised again when the envelope is mapped
            out.append(exc)
    return out


class ParsedAhead:
    """The parses of a batch's inline FreeSWITCH XML envelopes, in chunks of ``CHUNK_CHARS``:
    one hand-off to the loop's default executor per chunk, the first started at once and each
    next one when the previous is taken, so the thread parses chunk k+1 while the loop maps
    chunk k. ``take`` is called in batch order."""

    def __init__(self, envelopes: Sequence[RawEnvelope | None]) -> None:
        self._texts: list[list[str]] = []
        self._indices: list[list[int]] = []
        self._chunk_of: dict[int, int] = {}
        size = CHUNK_CHARS
        for i, env in enumerate(envelopes):
            if env is None or env.kind is not PayloadKind.FREESWITCH_XML or env.payload is None:
                continue
            if size >= CHUNK_CHARS:
                self._texts.append([])
                self._indices.append([])
                size = 0
            self._texts[-1].append(env.payload)
            self._indices[-1].append(i)
            self._chunk_of[i] = len(self._texts) - 1
            size += len(env.payload)
        self._ready: dict[int, Parsed] = {}
        self._taken = 0  # chunks received
        self._pending: asyncio.Future[list[Parsed]] | None = None
        self._start(0)

    def _start(self, k: int) -> None:
        self._pending = None
        if k < len(self._texts):
            loop = asyncio.get_running_loop()
            self._pending = loop.run_in_executor(None, parse_all, self._texts[k])

    async def take(self, i: int) -> Parsed | None:
        """Envelope ``i``'s parse; None when it is not parsed ahead (the mapping parses it)."""
        k = self._chunk_of.get(i)
        if k is None:
            return None
        while self._taken <= k:
            assert self._pending is not None
            results = await self._pending
            self._ready = dict(zip(self._indices[self._taken], results, strict=True))
            self._taken += 1
            self._start(self._taken)
        return self._ready.pop(i)

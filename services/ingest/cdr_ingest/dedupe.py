"""Recently accepted CDRs, so a replayed or re-posted copy is answered ``duplicate``.

Best effort by design: the index lives in one ingest process, holds the last
``INGEST_DEDUPE_WINDOW`` acceptances and is lost on restart. The CDR store (idempotent on the call
id) stays the real guarantee; this index only spares the bus and the parser a second copy and
tells an operator replaying a directory which files were already in.

Only a copy with the same call id *and* the same bytes is a duplicate, and only once the first
copy was acknowledged (made durable) by the bus. A different document for a known call id is
published again; the parser keeps the first version.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict


class RecentAccepts:
    """A bounded FIFO index of ``(call_id, sha256)`` → the envelope id that carried it.

    One bytes key per entry (call id, NUL, raw digest) keeps it near 300 bytes an entry, so the
    default window of 100,000 costs about 30 MB.
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self._seen: OrderedDict[bytes, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    @staticmethod
    def key(call_id: str | None, payload: str) -> bytes | None:
        """The index key of a payload, or None when there is nothing to dedupe on."""
        if call_id is None:
            return None
        return RecentAccepts.key_of(call_id, hashlib.sha256(payload.encode()).digest())

    @staticmethod
    def key_of(call_id: str | None, digest: bytes) -> bytes | None:
        """``key`` from the payload's raw sha256 digest (computed once for the envelope too)."""
        if call_id is None:
            return None
        return call_id.encode() + b"\0" + digest

    def get(self, key: bytes | None) -> str | None:
        """The envelope id of an acknowledged copy of these bytes for this call, if recent."""
        if key is None or not self.window:
            return None
        return self._seen.get(key)

    def add(self, key: bytes | None, envelope_id: str) -> None:
        """Record a copy the bus acknowledged; forget the oldest past the window."""
        if key is None or not self.window:
            return
        self._seen[key] = envelope_id
        while len(self._seen) > self.window:
            self._seen.popitem(last=False)

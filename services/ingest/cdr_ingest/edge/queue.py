"""The durable local queue: SQLite in WAL mode with ``synchronous=FULL``.

A line counts as captured once its insert is committed (fsync'd). Each line gets the next
per-device sequence number from ``AUTOINCREMENT``, which SQLite never reuses, so a sequence
survives restarts and deleted rows. A line leaves ``lines`` only after ingest answered 2xx for
it; a line ingest refused moves to ``rejected`` with the reason (same seq: re-sending it later is
still idempotent at ingest).

Calls are synchronous: each is one short transaction on a local file, and the agent has nothing
else to do while its queue is being written.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    captured_at REAL NOT NULL,
    line BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    captured_at REAL NOT NULL,
    line BLOB NOT NULL,
    error TEXT NOT NULL,
    detail TEXT NOT NULL,
    rejected_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Line:
    seq: int
    captured_at: float
    line: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    seq: int
    captured_at: float
    line: bytes
    error: str
    detail: str
    rejected_at: float


class LineQueue:
    def __init__(self, path: Path, *, max_lines: int = 1_000_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_lines = max_lines
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        # A small page cache: the agent's memory stays flat however deep the queue is.
        self.db.execute("PRAGMA cache_size=-2048")
        self.db.executescript(SCHEMA)
        self.depth = int(self.db.execute("SELECT count(*) FROM lines").fetchone()[0])

    def close(self) -> None:
        self.db.close()

    @property
    def full(self) -> bool:
        return self.depth >= self.max_lines

    def append(self, lines: Sequence[bytes], captured_at: float | None = None) -> list[int]:
        """Commit the lines (one transaction, one fsync); return their sequence numbers."""
        if not lines:
            return []
        at = time.time() if captured_at is None else captured_at
        seqs = []
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for line in lines:
                cur = self.db.execute(
                    "INSERT INTO lines (captured_at, line) VALUES (?, ?)", (at, line)
                )
                seqs.append(int(cur.lastrowid or 0))
        self.depth += len(lines)
        return seqs

    def peek(self, limit: int) -> list[Line]:
        """The oldest ``limit`` lines, in sequence order (they stay until ``remove``)."""
        rows = self.db.execute(
            "SELECT seq, captured_at, line FROM lines ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [Line(int(s), float(c), bytes(b)) for s, c, b in rows]

    def remove(self, seqs: Iterable[int]) -> None:
        """Delivered: gone from the queue, and remembered as the last delivery.

        Committed without its own fsync (``synchronous=NORMAL`` in WAL mode: durable at the next
        checkpoint or FULL commit). A power cut may undo the removal, and those lines are then
        sent again: ingest is idempotent on (device, seq), so that costs a duplicate request,
        never a duplicate call, and catching up is not bound by one fsync per batch."""
        seqs = list(seqs)
        if not seqs:
            return
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._remove(seqs)
        finally:
            self.db.execute("PRAGMA synchronous=FULL")

    def _remove(self, seqs: list[int]) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            removed = self._delete(seqs)
            self._set_meta({"last_delivered_seq": str(max(seqs)), "last_delivered_at": _now()})
        self.depth -= removed

    def reject(self, refused: dict[int, tuple[str, str]]) -> None:
        """Move refused lines (seq → (error, detail)) to ``rejected``."""
        if not refused:
            return
        now = time.time()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for seq, (error, detail) in refused.items():
                self.db.execute(
                    "INSERT OR REPLACE INTO rejected "
                    "SELECT seq, captured_at, line, ?, ?, ? FROM lines WHERE seq = ?",
                    (error[:200], detail[:2000], now, seq),
                )
            removed = self._delete(list(refused))
        self.depth -= removed

    def resend_rejected(self) -> int:
        """Put every rejected line back in the queue under its own seq; return how many."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            cur = self.db.execute(
                "INSERT OR IGNORE INTO lines (seq, captured_at, line) "
                "SELECT seq, captured_at, line FROM rejected"
            )
            moved = cur.rowcount
            self.db.execute("DELETE FROM rejected")
        self.depth = int(self.db.execute("SELECT count(*) FROM lines").fetchone()[0])
        return moved

    def rejected(self, limit: int = 100) -> list[Rejected]:
        rows = self.db.execute(
            "SELECT seq, captured_at, line, error, detail, rejected_at FROM rejected "
            "ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [Rejected(int(r[0]), r[1], bytes(r[2]), r[3], r[4], r[5]) for r in rows]

    def rejected_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM rejected").fetchone()[0])

    def oldest_age_s(self) -> float:
        row = self.db.execute("SELECT captured_at FROM lines ORDER BY seq LIMIT 1").fetchone()
        return 0.0 if row is None else max(0.0, time.time() - float(row[0]))

    def meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def _delete(self, seqs: list[int]) -> int:
        removed = 0
        for i in range(0, len(seqs), 500):
            chunk = seqs[i : i + 500]
            marks = ",".join("?" * len(chunk))
            removed += self.db.execute(f"DELETE FROM lines WHERE seq IN ({marks})", chunk).rowcount
        return removed

    def _set_meta(self, values: dict[str, str]) -> None:
        self.db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            values.items(),
        )


def _now() -> str:
    return f"{time.time():.3f}"

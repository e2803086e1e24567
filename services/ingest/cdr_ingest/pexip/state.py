"""The puller's persisted state in ``PEXIP_DATA_DIR/checkpoint.json`` (temp + rename).

``checkpoint``: the highest participant/conference ``end_time`` a completed pull saw; the next
window starts at ``checkpoint - PEXIP_OVERLAP``. It only moves after a pull has completed (its
records posted and its CSV files published), so an interrupted pull is simply done again from the
same place: the repeated records are deduplicated by id (CSV aggregates, CDR store).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

STATE_FILE = "checkpoint.json"


@dataclass
class PullState:
    checkpoint: datetime | None = None
    last_success: datetime | None = None

    @classmethod
    def load(cls, directory: Path) -> PullState:
        path = directory / STATE_FILE
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        return cls(
            checkpoint=_time(data.get("checkpoint")), last_success=_time(data.get("last_success"))
        )

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / STATE_FILE
        tmp = path.with_name(path.name + ".tmp")
        data = {
            "checkpoint": self.checkpoint.isoformat() if self.checkpoint else None,
            "last_success": self.last_success.isoformat() if self.last_success else None,
        }
        with tmp.open("w") as out:
            json.dump(data, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None

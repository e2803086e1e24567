"""What each puller last reported (``POST /v1/pexip/pulls``), for ``GET /v1/pexip/pulls`` and the
console's Pexip page: one entry per Management Node, kept in ``<data dir>/pexip-pulls.json``
(temp + rename). A node is ``stale`` once two scheduled pulls (by the cron it reported) have
passed without a report: pulls stopped, and Pexip's FIFO history may be outrunning them.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, Field

GRACE = timedelta(minutes=5)


class PullReport(BaseModel):
    node: str = Field(min_length=1, max_length=255)
    finished: datetime
    since: datetime | None = None
    until: datetime
    checkpoint: datetime | None = None
    conferences: int = Field(ge=0)
    participants: int = Field(ge=0)
    posted: int = Field(ge=0)
    cron: str | None = Field(default=None, max_length=100)
    warnings: list[str] = Field(default_factory=list, max_length=20)


def is_stale(report: PullReport, now: datetime) -> bool:
    """Two scheduled runs missed (plus a grace); without a cron, a day without a report."""
    finished = report.finished.astimezone(UTC)
    if report.cron:
        try:
            runs = CronSim(report.cron, finished.replace(tzinfo=None))
            next(runs)
            second = next(runs).replace(tzinfo=UTC)
        except (CronSimError, StopIteration, ValueError):
            second = finished + timedelta(days=1)
    else:
        second = finished + timedelta(days=1)
    return now > second + GRACE


class PullReports:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def record(self, report: PullReport) -> None:
        with self._lock:
            data = self._load()
            data[report.node] = report.model_dump(mode="json")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with tmp.open("w") as out:
                json.dump(data, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)

    def items(self, now: datetime | None = None) -> list[dict[str, Any]]:
        now = now or datetime.now(UTC)
        out = []
        for value in self._load().values():
            try:
                report = PullReport.model_validate(value)
            except ValueError:
                continue
            item = report.model_dump(mode="json")
            item["warnings"] = "; ".join(report.warnings)
            item["stale"] = is_stale(report, now)
            out.append(item)
        return sorted(out, key=lambda i: str(i["node"]))


_STORES: dict[Path, PullReports] = {}


def reports_at(path: Path) -> PullReports:
    """One store (and lock) per file in this process."""
    return _STORES.setdefault(path, PullReports(path))

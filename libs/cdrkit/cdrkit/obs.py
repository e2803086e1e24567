"""Logging (JSON lines when not on a terminal) and the Prometheus exposition."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_STD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra=`` fields are kept as top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class _AlembicChatter(logging.Filter):
    """Drops alembic's per-run "Context impl …" and "Will assume … DDL" lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Context impl", "Will assume"))


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure the root logger once per process (idempotent)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if use_json
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log duplicates our request metrics; keep warnings only.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # the mock feed and replay post through httpx: one INFO line per request is noise
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # alembic at INFO: its seven "setup plugin" lines and the "Context impl"/"Will assume" pair on
    # every start are noise; the "Running upgrade" lines (a schema change) stay. DEBUG shows all.
    quiet = root.level > logging.DEBUG
    logging.getLogger("alembic.runtime.plugins").setLevel(
        logging.WARNING if quiet else logging.NOTSET
    )
    migration = logging.getLogger("alembic.runtime.migration")
    migration.filters[:] = [f for f in migration.filters if not isinstance(f, _AlembicChatter)]
    if quiet:
        migration.addFilter(_AlembicChatter())

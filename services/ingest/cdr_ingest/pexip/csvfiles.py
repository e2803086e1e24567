"""The CSV files operators expect from pex_data_collector, made right.

Per pull, ``<YYYY-MM-DDTHH-MM-SSZ>_pexHistoryConf.csv`` and ``…_pexHistoryPart.csv`` hold that
pull's records; the aggregates ``pexHistoryConf.csv`` and ``pexHistoryPart.csv`` hold every record
once (keyed by id: a re-pull of the same window appends nothing twice). RFC 4180 (``\\r\\n``,
quoting where needed), UTF-8, a header row, the fixed column set of ``records.FIELDS`` plus a
trailing ``extra`` column holding, as JSON, the fields a newer Pexip adds; nested values as JSON.

Every file is written to a temporary name, fsync'd, then renamed into place (and the directory
fsync'd), so a crash leaves either the old file or the new one, never half a file.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from cdr_ingest.pexip.records import FIELDS, RecordType
from cdrkit.files import fsync_dir

log = logging.getLogger(__name__)

AGGREGATE = {
    RecordType.CONFERENCE: "pexHistoryConf.csv",
    RecordType.PARTICIPANT: "pexHistoryPart.csv",
}
TMP_SUFFIX = ".tmp"


def header(rtype: RecordType) -> list[str]:
    return [*FIELDS[rtype], "extra"]


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def cell(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    return _encode(value)


_KNOWN = {rtype: frozenset(fields) for rtype, fields in FIELDS.items()}


def row(rtype: RecordType, obj: dict[str, Any]) -> list[str]:
    known = _KNOWN[rtype]
    out = [cell(obj.get(f)) for f in FIELDS[rtype]]
    extra = {k: v for k, v in obj.items() if k not in known}
    out.append(_encode(extra) if extra else "")
    return out


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H-%M-%SZ")


def _writer(stream: IO[str]) -> Any:
    return csv.writer(stream, lineterminator="\r\n")


def _publish(tmp: Path, final: Path) -> None:
    os.replace(tmp, final)
    fsync_dir(final.parent)


def _close_synced(stream: IO[str]) -> None:
    stream.flush()
    os.fsync(stream.fileno())
    stream.close()


class PullFiles:
    """This pull's two CSV files, written as records arrive and published by ``commit``."""

    def __init__(self, directory: Path, started: datetime) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.stamp = stamp(started)
        self.final: dict[RecordType, Path] = {}
        self._tmp: dict[RecordType, Path] = {}
        self._streams: dict[RecordType, IO[str]] = {}
        self._writers: dict[RecordType, Any] = {}
        self.rows: dict[RecordType, int] = dict.fromkeys(RecordType, 0)
        suffix = {RecordType.CONFERENCE: "pexHistoryConf", RecordType.PARTICIPANT: "pexHistoryPart"}
        for rtype in RecordType:
            final = directory / f"{self.stamp}_{suffix[rtype]}.csv"
            n = 1
            while final.exists():  # two pulls in one second: never overwrite the first's file
                final = directory / f"{self.stamp}-{n}_{suffix[rtype]}.csv"
                n += 1
            tmp = final.with_name(final.name + TMP_SUFFIX)
            stream = tmp.open("w", encoding="utf-8", newline="")
            writer = _writer(stream)
            writer.writerow(header(rtype))
            self.final[rtype], self._tmp[rtype] = final, tmp
            self._streams[rtype], self._writers[rtype] = stream, writer

    def write(self, rtype: RecordType, obj: dict[str, Any]) -> None:
        self._writers[rtype].writerow(row(rtype, obj))
        self.rows[rtype] += 1

    def commit(self) -> dict[RecordType, int]:
        """Publish this pull's files, then add their new records to the aggregates.

        Returns the number of rows each aggregate gained."""
        for rtype in RecordType:
            _close_synced(self._streams[rtype])
            _publish(self._tmp[rtype], self.final[rtype])
        return {
            rtype: merge_aggregate(self.directory, rtype, self.final[rtype]) for rtype in RecordType
        }

    def abort(self) -> None:
        for rtype in RecordType:
            self._streams[rtype].close()
            self._tmp[rtype].unlink(missing_ok=True)


def _rows(path: Path) -> Iterator[list[str]]:
    with path.open(encoding="utf-8", newline="") as stream:
        yield from csv.reader(stream)


def _index_path(aggregate: Path) -> Path:
    return aggregate.with_name(f".{aggregate.name}.ids")


def _aggregate_ids(aggregate: Path) -> set[str]:
    """The ids in the aggregate: from its index file (``.<name>.ids``: the aggregate's size, then
    one id a line) when that matches the file, else read from the aggregate itself (one pass)."""
    index = _index_path(aggregate)
    size = aggregate.stat().st_size
    try:
        with index.open(encoding="utf-8") as stream:
            if stream.readline().strip() == f"size={size}":
                return {line.rstrip("\n") for line in stream}
    except OSError:
        pass
    rows = _rows(aggregate)
    next(rows, None)
    return {line[0] for line in rows if line}


def _write_index(aggregate: Path, ids: set[str]) -> None:
    index = _index_path(aggregate)
    tmp = index.with_name(index.name + TMP_SUFFIX)
    with tmp.open("w", encoding="utf-8") as out:
        out.write(f"size={aggregate.stat().st_size}\n")
        out.writelines(f"{i}\n" for i in ids)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, index)


def _adopt(aggregate: Path, expected: list[str]) -> bool:
    """Whether the aggregate exists and is ours; one with another header (pex_data_collector's,
    or edited by hand) is moved aside, never changed."""
    if not aggregate.exists():
        return False
    first = next(_rows(aggregate), None)
    if first == expected:
        return True
    aside = aggregate.with_name(f"{aggregate.stem}.{stamp_now()}.foreign.csv")
    os.replace(aggregate, aside)
    log.warning(
        "%s has another header (not written by cdrflow); moved it to %s and started a new one",
        aggregate,
        aside.name,
    )
    return False


def merge_aggregate(directory: Path, rtype: RecordType, pulled: Path) -> int:
    """Rewrite the aggregate (temp + rename) with the rows of ``pulled`` whose id it lacks.

    The existing rows are copied as bytes (no CSV parsing); the ids come from the index file, so a
    pull costs one copy of the aggregate, not a parse of it."""
    aggregate = directory / AGGREGATE[rtype]
    expected = header(rtype)
    ours = _adopt(aggregate, expected)
    ids = _aggregate_ids(aggregate) if ours else set()
    tmp = aggregate.with_name(aggregate.name + TMP_SUFFIX)
    added = 0
    with tmp.open("w", encoding="utf-8", newline="") as out:
        writer = _writer(out)
        if ours:
            with aggregate.open("rb") as old:
                out.flush()
                shutil.copyfileobj(old, out.buffer, 1 << 20)
        else:
            writer.writerow(expected)
        rows = _rows(pulled)
        next(rows, None)
        for line in rows:
            if line and line[0] not in ids:
                ids.add(line[0])
                writer.writerow(line)
                added += 1
        out.flush()
        os.fsync(out.fileno())
    _publish(tmp, aggregate)
    _write_index(aggregate, ids)
    return added


def stamp_now() -> str:
    from datetime import UTC

    return stamp(datetime.now(UTC))


def remove_leftovers(directory: Path) -> None:
    """Temporary files a crashed pull left behind (never published, safe to drop)."""
    if directory.is_dir():
        for path in directory.glob(f"*{TMP_SUFFIX}"):
            path.unlink(missing_ok=True)


def read_csv(path: Path) -> list[dict[str, str]]:
    """A published file as dictionaries (tests, tools)."""
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))

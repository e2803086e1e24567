"""In-memory aggregation of calls into (bucket, dimension, value) cells of moments.

A cell maps a metric name to its moments ``[count, sum, squares, min, max]``. Metric names:
``attempts``, ``answered``, ``zero_duration`` (no billed second), ``short_calls`` (answered,
billed < 6 s), ``billsec``, ``duration``, ``pdd_ms``, ``sip:<code>``, ``sip_class:<n>xx``,
``cause:<Q.850 name>`` and ``plugin:<name>`` (plugin counters). Counters are moments whose every
value is 1 (or the increment), so one row shape and one additive merge serve all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from cdr_stats.call import BUCKET_S, DIMENSIONS, Call

ALL = "all"
Key = tuple[int, str, str]  # bucket, dim, value
Moments = list[Any]  # [count, sum, squares, min, max]; min/max None for counters merged in SQL
Cell = dict[str, Moments]
Row = tuple[str, int, str, str, int, float, float, float | None, float | None]

SHORT_CALL_S = 6


def add(cell: Cell, metric: str, value: float) -> None:
    m = cell.get(metric)
    if m is None:
        cell[metric] = [1, value, value * value, value, value]
        return
    m[0] += 1
    m[1] += value
    m[2] += value * value
    if value < m[3]:  # noqa: PLR1730 (an if is cheaper than min() on the hot path)
        m[3] = value
    if value > m[4]:  # noqa: PLR1730
        m[4] = value


def merge(cell: Cell, metric: str, other: Moments) -> None:
    m = cell.get(metric)
    if m is None:
        cell[metric] = list(other)
        return
    m[0] += other[0]
    m[1] += other[1]
    m[2] += other[2]
    if other[3] is not None and (m[3] is None or other[3] < m[3]):
        m[3] = other[3]
    if other[4] is not None and (m[4] is None or other[4] > m[4]):
        m[4] = other[4]


def call_metrics(call: Call) -> list[tuple[str, float]]:
    """The (metric, value) observations one call adds to each of its cells."""
    out: list[tuple[str, float]] = [("attempts", 1)]
    billsec = call.billsec_s
    if call.answered:
        out.append(("answered", 1))
        if billsec is not None and billsec < SHORT_CALL_S:
            out.append(("short_calls", 1))
    if not billsec:
        out.append(("zero_duration", 1))
    out.append(("billsec", billsec or 0))
    if call.duration_s is not None:
        out.append(("duration", call.duration_s))
    if call.pdd_ms is not None:
        out.append(("pdd_ms", call.pdd_ms))
    code = call.sip_code
    if code is not None:
        out.append((f"sip:{code}", 1))
        out.append((f"sip_class:{code // 100}xx", 1))
    if call.hangup_cause is not None:
        out.append((f"cause:{call.hangup_cause}", 1))
    return out


def call_keys(call: Call) -> list[Key]:
    bucket = call.bucket
    keys: list[Key] = [(bucket, ALL, "")]
    for dim in DIMENSIONS:
        value = getattr(call, dim)
        if value is not None:
            keys.append((bucket, dim, value))
    return keys


class Aggregate:
    """Cells of one consumed batch: the additive delta flushed to the database."""

    def __init__(self) -> None:
        self.cells: dict[Key, Cell] = {}

    def cell(self, key: Key) -> Cell:
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = {}
        return cell

    def add_call(self, call: Call, extra: Iterable[tuple[str, float]] = ()) -> list[Key]:
        observations = call_metrics(call)
        observations.extend(extra)
        keys = call_keys(call)
        cells = self.cells
        for key in keys:
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = {}
            for metric, value in observations:  # add() inlined: this is the hot loop
                m = cell.get(metric)
                if m is None:
                    cell[metric] = [1, value, value * value, value, value]
                    continue
                m[0] += 1
                m[1] += value
                m[2] += value * value
                if value < m[3]:  # noqa: PLR1730
                    m[3] = value
                if value > m[4]:  # noqa: PLR1730
                    m[4] = value
        return keys

    def rows(self) -> list[Row]:
        """Delta rows sorted by primary key, so concurrent writers lock rows in one order."""
        out: list[Row] = []
        for (bucket, dim, value), cell in self.cells.items():
            for metric, m in cell.items():
                out.append((dim, bucket, value, metric, m[0], m[1], m[2], m[3], m[4]))
        out.sort(key=lambda r: (r[0], r[1], r[2], r[3]))
        return out


def rows_to_cells(rows: Iterable[Any]) -> Iterator[tuple[Key, str, Moments]]:
    for dim, bucket, value, metric, count, total, squares, low, high in rows:
        yield (int(bucket), dim, value), metric, [int(count), total, squares, low, high]


def bucket_end(bucket: int) -> int:
    return bucket + BUCKET_S

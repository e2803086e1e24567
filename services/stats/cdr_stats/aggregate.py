"""In-memory aggregation of calls into (bucket, dimension, value) cells of moments.

A cell maps a metric name to its moments ``[count, sum, squares, min, max]``. Metric names:
``attempts``, ``answered``, ``zero_duration`` (no billed second), ``short_calls`` (answered,
billed < 6 s), ``billsec``, ``duration``, ``pdd_ms``, ``sip:<code>``, ``sip_class:<n>xx``,
``cause:<Q.850 name>`` and ``plugin:<name>`` (plugin counters). Counters are moments whose every
value is 1 (or the increment), so one row shape and one additive merge serve all of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

from cdr_stats.call_fields import BUCKET_S, DIMENSIONS, Call

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
    counters, numbers = _observe(call)
    out: list[tuple[str, float]] = [(name, 1) for name in counters]
    out.append(("billsec", numbers[0]))
    if numbers[1] is not None:
        out.append(("duration", numbers[1]))
    if numbers[2] is not None:
        out.append(("pdd_ms", numbers[2]))
    return out


def call_keys(call: Call) -> list[Key]:
    bucket = call.bucket
    keys: list[Key] = [(bucket, ALL, "")]
    for dim in DIMENSIONS:
        value = getattr(call, dim)
        if value is not None:
            keys.append((bucket, dim, value))
    return keys


# Metric names of SIP codes and hangup causes, made once (a bounded cache: causes come from
# the CDRs, so a flood of made-up ones must not grow it without end).
_SIP_NAMES: dict[int, tuple[str, str]] = {}
_CAUSE_NAMES: dict[str, str] = {}
_CAUSE_CACHE_MAX = 1000


def _observe(call: Call) -> tuple[list[str], tuple[float, float | None, float | None]]:
    """A call's counters (metrics it adds 1 to) and its billsec, duration and PDD."""
    counters = ["attempts"]
    billsec = call.billsec_s
    if call.answered:
        counters.append("answered")
        if billsec is not None and billsec < SHORT_CALL_S:
            counters.append("short_calls")
    if not billsec:
        counters.append("zero_duration")
    code = call.sip_code
    if code is not None:
        names = _SIP_NAMES.get(code)
        if names is None:
            names = _SIP_NAMES[code] = (f"sip:{code}", f"sip_class:{code // 100}xx")
        counters += names
    cause = call.hangup_cause
    if cause is not None:
        name = _CAUSE_NAMES.get(cause)
        if name is None:
            name = f"cause:{cause}"
            if len(_CAUSE_NAMES) < _CAUSE_CACHE_MAX:
                _CAUSE_NAMES[cause] = name
        counters.append(name)
    return counters, (billsec or 0, call.duration_s, call.pdd_ms)


# One call as the aggregation keeps it: counters, billsec, duration, PDD, other observations.
_Record = tuple[list[str], float, float | None, float | None, list[tuple[str, float]] | None]


def _moments(values: list[Any]) -> Moments:
    return [len(values), sum(values), sum([v * v for v in values]), min(values), max(values)]


class Aggregate:
    """Cells of one consumed batch: the additive delta flushed to the database.

    ``add_call`` only files the call's observations under each of its keys; the moments are
    computed per cell afterwards, a metric at a time over all the cell's calls (``Counter``
    and the ``sum``/``min``/``max`` built-ins): several times faster than updating every cell's
    moments call by call.
    """

    def __init__(self) -> None:
        self._groups: dict[Key, list[_Record]] = {}
        self._cells: dict[Key, Cell] | None = None

    @property
    def cells(self) -> dict[Key, Cell]:
        """The cells (computed once, after the last ``add_call``; they may then be edited)."""
        if self._cells is None:
            self._cells = {key: self._cell(records) for key, records in self._groups.items()}
        return self._cells

    def add_call(self, call: Call, extra: Iterable[tuple[str, float]] = ()) -> list[Key]:
        counters, (billsec, duration, pdd) = _observe(call)
        other: list[tuple[str, float]] | None = None
        for name, value in extra:
            if value == 1 and type(value) is int:
                counters.append(name)
            elif other is None:
                other = [(name, value)]
            else:
                other.append((name, value))
        record: _Record = (counters, billsec, duration, pdd, other)
        groups = self._groups
        bucket = call.bucket
        keys: list[Key] = [(bucket, ALL, "")]  # call_keys(), spelled out: the hot path
        if call.carrier is not None:
            keys.append((bucket, "carrier", call.carrier))
        if call.account is not None:
            keys.append((bucket, "account", call.account))
        if call.direction is not None:
            keys.append((bucket, "direction", call.direction))
        if call.tenant is not None:
            keys.append((bucket, "tenant", call.tenant))
        for key in keys:
            records = groups.get(key)
            if records is None:
                groups[key] = [record]
            else:
                records.append(record)
        self._cells = None
        return keys

    @staticmethod
    def _cell(records: list[_Record]) -> Cell:
        cell: Cell = {
            name: [n, n, n, 1, 1]
            for name, n in Counter(chain.from_iterable([r[0] for r in records])).items()
        }
        cell["billsec"] = _moments([r[1] for r in records])
        values = [r[2] for r in records if r[2] is not None]
        if values:
            cell["duration"] = _moments(values)
        values = [r[3] for r in records if r[3] is not None]
        if values:
            cell["pdd_ms"] = _moments(values)
        for r in records:
            if r[4]:
                for name, value in r[4]:
                    add(cell, name, value)
        return cell

    def rows(self) -> list[Row]:
        """Delta rows sorted by primary key, so concurrent writers lock rows in one order."""
        out: list[Row] = []
        cells = self.cells
        for bucket, dim, value in sorted(cells, key=_row_order):
            cell = cells[(bucket, dim, value)]
            for metric in sorted(cell):
                m = cell[metric]
                out.append((dim, bucket, value, metric, m[0], m[1], m[2], m[3], m[4]))
        return out


def _row_order(key: Key) -> tuple[str, int, str]:
    return key[1], key[0], key[2]


def rows_to_cells(rows: Iterable[Any]) -> Iterator[tuple[Key, str, Moments]]:
    for dim, bucket, value, metric, count, total, squares, low, high in rows:
        yield (int(bucket), dim, value), metric, [int(count), total, squares, low, high]


def bucket_end(bucket: int) -> int:
    return bucket + BUCKET_S

"""The stats service's work: ``cdr.normalized`` in, 6-minute buckets and alerts out.

Per consumed batch (the consume loop commits the offsets only after this returns):
1. decode each message (``call.decode_call``: ``json.loads`` and the few fields stats uses);
   an undecodable one is counted as ``invalid`` and logged, a call that ends before the retention
   window as ``expired``;
2. in ONE database transaction: insert the call ids into ``stats_seen`` (``ON CONFLICT DO NOTHING
   RETURNING``): only the ids that come back are new, so a redelivered call (at-least-once
   transport, a rebalance, a restart) is never counted twice, whichever instance sees it again;
   run the plugins on the new calls, aggregate them into per-(bucket, dimension, value) deltas,
   add the deltas to ``stats_buckets`` (additive upsert, ``RETURNING`` the merged totals of every
   instance), evaluate the threshold rules on those totals and store the new alerts (dedup key);
3. after the commit: refresh the in-memory view of recent buckets (live feed and gauges) and
   push the new alerts to the live clients.
A crash before the commit rolls all of it back and the batch is redelivered; after the commit the
dedup keys make the redelivery a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import itemgetter
from typing import Any

from cdr_stats.aggregate import ALL, Aggregate, Cell, Key, rows_to_cells
from cdr_stats.call_fields import BUCKET_S, BadCall, Call, bucket_of, decode_call
from cdr_stats.live import LiveHub, sse
from cdr_stats.metrics import (
    ALERTS,
    BUCKET_ACD,
    BUCKET_ASR,
    BUCKET_ATTEMPTS,
    BUCKET_ZERO,
    CDRS,
    PLUGIN_ERRORS,
    PRUNED_ROWS,
)
from cdr_stats.plugins import Alert, PluginContext, PluginSet, run_plugins
from cdr_stats.repository import AlertRow, StatsRepository
from cdr_stats.rules import RULE_METRICS, evaluate
from cdr_stats.settings import StatsSettings
from cdrkit.bus import Message
from cdrkit.pacing import Slicer

log = logging.getLogger(__name__)

# The in-memory view (live feed, gauges) keeps the last hour of all-calls and carrier cells.
VIEW_S = 3600
VIEW_DIMS = (ALL, "carrier")
_CELL_KEY = itemgetter(6, 7)  # bucket, value of a row of StatsRepository.read


def _moments(m: Sequence[Any] | None) -> dict[str, Any]:
    if not m or not m[0]:
        return {"count": 0, "sum": 0, "squares": 0, "min": None, "max": None}
    return {"count": int(m[0]), "sum": m[1], "squares": m[2], "min": m[3], "max": m[4]}


def metrics_json(
    cell: Mapping[str, Sequence[Any]], wanted: Sequence[str] | None = None
) -> dict[str, Any]:
    """A cell's moments in the response shape of ARCHITECTURE §5 (plus duration, pdd_ms,
    sip_classes and the plugins' counters)."""
    return metrics_of_rows([(*m, name) for name, m in cell.items()], wanted)


def metrics_of_rows(
    rows: Iterable[Sequence[Any]], wanted: Sequence[str] | None = None
) -> dict[str, Any]:
    """``metrics_json`` of a cell given as rows ``(count, sum, squares, min, max, metric, …)``
    (``StatsRepository.read``'s shape). Called once per entry of ``/v1/buckets``: one pass over
    the rows, no helper call per metric."""
    fixed: dict[str, Sequence[Any]] = {}
    sip: dict[str, int] = {}
    classes: dict[str, int] = {}
    causes: dict[str, int] = {}
    counters: dict[str, float] = {}
    for row in rows:
        head, colon, tail = row[5].partition(":")
        if not colon:
            fixed[head] = row
        elif not row[0]:
            continue
        elif head == "sip":
            sip[tail] = int(row[0])
        elif head == "sip_class":
            classes[tail] = int(row[0])
        elif head == "cause":
            causes[tail] = int(row[0])
        elif head == "plugin":
            counters[tail] = row[1]
    get = fixed.get
    m: Sequence[Any] | None = get("attempts")
    attempts = int(m[0]) if m else 0
    m = get("answered")
    answered = int(m[0]) if m else 0
    m = get("zero_duration")
    zero = int(m[0]) if m else 0
    m = get("short_calls")
    short = int(m[0]) if m else 0
    billsec = _moments(get("billsec"))
    out: dict[str, Any] = {
        "attempts": attempts,
        "answered": answered,
        "asr": answered / attempts if attempts else None,
        "acd": billsec["sum"] / answered if answered else None,
        "zero_duration": zero,
        "zero_duration_ratio": zero / attempts if attempts else None,
        "short_calls": short,
        "billsec": billsec,
        "duration": _moments(get("duration")),
        "pdd_ms": _moments(get("pdd_ms")),
        "sip_codes": sip,
        "sip_classes": classes,
        "hangup_causes": causes,
        "counters": counters,
    }
    if wanted is not None:
        return {k: out[k] for k in wanted}
    return out


_gc_pausers = 0


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block, for code that makes a great many
    short-lived containers (a batch of decoded CDRs, the rows of a query): there the collector's
    passes, each walking every live object, cost more than the work itself. Reference counting
    still frees everything at once; the collector runs again when the last block ends (blocks
    may overlap across ``await``; one lasts at most a batch or a query). Leaves a collector
    that someone else disabled alone."""
    global _gc_pausers  # noqa: PLW0603 (one process-wide switch, like gc's own)
    if not _gc_pausers and not gc.isenabled():
        yield
        return
    _gc_pausers += 1
    gc.disable()
    try:
        yield
    finally:
        _gc_pausers -= 1
        if not _gc_pausers:
            gc.enable()


class StatsService:
    def __init__(self, settings: StatsSettings, repo: StatsRepository, plugins: PluginSet) -> None:
        self.settings = settings
        self.repo = repo
        self.plugins = plugins
        self.hub = LiveHub(settings.live_queue_size, settings.keepalive_s)
        self.view: dict[Key, Cell] = {}
        self._dirty: set[Key] = set()
        self._exported: set[str] = set()
        # Dimensions whose merged totals the upsert reads back: the view's and the rules'.
        self._returned = sorted({*VIEW_DIMS, *(d for r in settings.rules for d in r.dimensions)})

    # -- consuming -------------------------------------------------------------------------

    async def handle_batch(self, batch: Sequence[Message]) -> None:
        """Count a batch exactly once per call id (see the module doc for the order)."""
        with gc_paused():  # thousands of decoded CDRs, all freed by reference counting
            await self._handle_batch(batch)

    async def _handle_batch(self, batch: Sequence[Message]) -> None:
        now = time.time()
        cutoff = bucket_of(now - self.settings.retention_hours * 3600)
        calls: dict[str, Call] = {}
        invalid = expired = 0
        slicer = Slicer()  # the loops give the event loop back (cdrkit.pacing)
        for msg in batch:
            await slicer.tick()
            try:
                call = decode_call(msg.value)
            except BadCall as exc:
                invalid += 1
                log.warning("stats: %s is not a countable CDR: %s", msg, exc)
                continue
            if call.bucket < cutoff:
                expired += 1
                continue
            calls[call.call_id] = call
        plugins = list(self.plugins.plugins.items())
        async with self.repo.transaction() as session:
            new = await self.repo.first_seen(session, {c: call.bucket for c, call in calls.items()})
            agg = Aggregate()
            found: list[Alert] = []
            for call_id in new:  # not sliced: the transaction holds SQLite's write lock here
                call = calls[call_id]
                ctx = PluginContext(call.bucket)
                if plugins:
                    run_plugins(plugins, call, ctx, self._plugin_failed)
                agg.add_call(call, ctx.increments)
                found.extend(ctx.alerts)
            for cell in agg.cells.values():
                for metric in RULE_METRICS:
                    if metric not in cell:
                        cell[metric] = [0, 0.0, 0.0, None, None]
            merged = await self.repo.add_deltas(session, agg.rows(), self._returned)
            totals: dict[Key, Cell] = {}
            for key, metric, m in rows_to_cells(merged):
                total = totals.get(key)
                if total is None:
                    total = totals[key] = {}
                total[metric] = m
            found.extend(evaluate(self.settings.rules, totals))
            stored = await self.repo.add_alerts(session, found, datetime.now(UTC))
        CDRS.labels("counted").inc(len(new))
        if dup := len(batch) - invalid - expired - len(new):
            CDRS.labels("duplicate").inc(dup)
        if invalid:
            CDRS.labels("invalid").inc(invalid)
        if expired:
            CDRS.labels("expired").inc(expired)
        self._remember(totals, now)
        for alert in stored:
            ALERTS.labels(alert.kind).inc()
            log.info("alert %s: %s", alert.kind, alert.text)
            self.hub.publish("alert", alert.to_json())

    def _plugin_failed(self, name: str, exc: Exception) -> None:
        PLUGIN_ERRORS.labels(name).inc()
        log.warning("stats plugin %s failed: %s: %s", name, type(exc).__name__, exc)

    def _remember(self, totals: Mapping[Key, Cell], now: float) -> None:
        oldest = bucket_of(now) - VIEW_S
        for key, cell in totals.items():
            if key[1] not in VIEW_DIMS or key[0] < oldest:
                continue
            known = self.view.get(key)
            if known is None:
                self.view[key] = cell
            else:
                known.update(cell)
            self._dirty.add(key)

    # -- live feed and gauges --------------------------------------------------------------

    def bucket_event(self, key: Key) -> dict[str, Any]:
        bucket, dim, value = key
        return {
            "start": bucket,
            "end": bucket + BUCKET_S,
            "group": {} if dim == ALL else {dim: value},
            "metrics": metrics_json(self.view[key]),
        }

    def snapshot(self) -> list[str]:
        """SSE messages a new live client starts with: the view's current bucket cells."""
        current = bucket_of(time.time())
        return [
            sse("bucket", self.bucket_event(k))
            for k in sorted(self.view)
            if k[0] >= current - BUCKET_S
        ]

    def publish_changes(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        dirty, self._dirty = self._dirty, set()
        for key in sorted(dirty):
            if key in self.view:
                self.hub.publish("bucket", self.bucket_event(key))
        self._export_gauges(bucket_of(now))

    def _export_gauges(self, current: int) -> None:
        cells = [(v, c) for (b, d, v), c in self.view.items() if b == current and d == "carrier"]
        cells.sort(key=lambda vc: -vc[1].get("attempts", [0])[0])
        top = cells[: self.settings.top_carriers]
        exported = set()
        for carrier, cell in top:
            m = metrics_json(cell, ("attempts", "asr", "acd", "zero_duration_ratio"))
            BUCKET_ATTEMPTS.labels(carrier).set(m["attempts"])
            BUCKET_ASR.labels(carrier).set(m["asr"] or 0)
            BUCKET_ACD.labels(carrier).set(m["acd"] or 0)
            BUCKET_ZERO.labels(carrier).set(m["zero_duration_ratio"] or 0)
            exported.add(carrier)
        for gone in self._exported - exported:
            for gauge in (BUCKET_ATTEMPTS, BUCKET_ASR, BUCKET_ACD, BUCKET_ZERO):
                with contextlib.suppress(KeyError):
                    gauge.remove(gone)
        self._exported = exported

    async def run_publisher(self) -> None:
        while True:
            await asyncio.sleep(self.settings.live_interval_s)
            try:
                self.publish_changes()
            except Exception:
                log.exception("stats: live publish failed")

    # -- upkeep ------------------------------------------------------------------------------

    async def prune(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        cutoff = bucket_of(now - self.settings.retention_hours * 3600)
        alerts_before = datetime.fromtimestamp(now, UTC) - timedelta(
            hours=self.settings.alert_retention_hours
        )
        rows, _ = await self.repo.prune(cutoff, alerts_before)
        PRUNED_ROWS.inc(rows)
        oldest = bucket_of(now) - VIEW_S
        for key in [k for k in self.view if k[0] < oldest]:
            del self.view[key]
        return rows

    async def run_pruner(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception as exc:
                log.warning("stats: prune failed (will retry): %s", exc)
            await asyncio.sleep(self.settings.prune_interval_s)

    # -- queries -----------------------------------------------------------------------------

    async def buckets_json(
        self, dim: str, since: int, until: int, wanted: Sequence[str] | None
    ) -> bytes:
        """The ``/v1/buckets`` document (UTF-8 JSON), built from the rows without pydantic:
        one entry per (bucket, value), in that order."""
        stored = None if wanted is None else sorted({s for w in wanted for s in NEEDS[w]})
        with gc_paused():
            rows = await self.repo.read(dim, bucket_of(since), until, stored)
            # rows: (count, sum, squares, min, max, metric, bucket, value), in (bucket, value,
            # metric) order: a row is its metric's moments as is.
            entries = [
                {
                    "start": int(key[0]),
                    "end": int(key[0]) + BUCKET_S,
                    "group": {} if dim == ALL else {dim: key[1]},
                    "metrics": metrics_of_rows(group, wanted),
                }
                for key, group in groupby(rows, _CELL_KEY)
            ]
            body = json.dumps(
                {"buckets": entries}, ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode()
            # Freed before the collector is back: else its first pass walks them all.
            del entries, rows
        return body

    async def alerts(
        self, *, since: datetime | None, kind: str | None, limit: int
    ) -> list[AlertRow]:
        return await self.repo.list_alerts(since=since, kind=kind, limit=limit)

    async def delete_alerts(self, before: datetime | None) -> int:
        """Delete alerts created before ``before`` (all of them without it); how many went."""
        return await self.repo.delete_alerts(before)

    def reload_plugins(self) -> PluginSet:
        """Find the plugins again (built-ins, entry points). The buckets are untouched: they
        live in the database, and the consumer picks the new set up at its next batch."""
        self.plugins = PluginSet.load(self.settings, reload_modules=True)
        log.info("stats plugins reloaded: %s", self.plugins.describe())
        return self.plugins


# The stored metrics each response metric is derived from (a trailing ':' is a prefix).
NEEDS: dict[str, tuple[str, ...]] = {
    "attempts": ("attempts",),
    "answered": ("answered",),
    "asr": ("attempts", "answered"),
    "acd": ("answered", "billsec"),
    "zero_duration": ("zero_duration",),
    "zero_duration_ratio": ("attempts", "zero_duration"),
    "short_calls": ("short_calls",),
    "billsec": ("billsec",),
    "duration": ("duration",),
    "pdd_ms": ("pdd_ms",),
    "sip_codes": ("sip:",),
    "sip_classes": ("sip_class:",),
    "hangup_causes": ("cause:",),
    "counters": ("plugin:",),
}

"""Billing's and stats' consume handlers in process, without a broker or a database: instructions
per CDR (callgrind) and thread time per CDR, for the whole ``handle_batch`` and stage by stage
(issue 15, seventh round, "Billing and stats per CDR (h7billing)" in docs/performance.md). Not
part of ``make bench``.

The inputs are deterministic: the e2e bench's three FreeSWITCH fixtures moved to a fixed time,
mapped by the parser to normalised CDRs with uuids made from a counter, ``P`` of them prepared
whatever ``n`` is (so that preparing them cancels out of I(2n) - I(n)). ``handle_batch`` runs
with the services' real code and a repository that does everything the PostgreSQL one does
except the round trip: billing's two statements' column arrays bound by an asyncpg dialect (its
JSON serializer), stats' columns, its alerts' dedup keys and labels' JSON; the clock is fixed
(the slicer never yields, the stats service's clock is the fixtures').

* ``python -m bench.handlers_cpu run MODE N``: one run of ``N`` CDRs (what callgrind counts);
* ``python -m bench.handlers_cpu count [MODE,...] [N]``: each mode (warm) on N and on 2N CDRs
  in ``bench.callgrind`` regions of one callgrind run; prints (I(2N) - I(N)) / N, the
  instructions per CDR (``count-processes MODE,... [N]``: the same from two whole processes);
* ``python -m bench.handlers_cpu time [ROUNDS] [MODE ...]``: ``time.thread_time`` per CDR of
  each mode over all ``P`` CDRs, the best and the median of ``ROUNDS``.

Modes: ``billing`` and ``stats`` (the handlers), and stages: ``b.decode`` (``decode_facts``:
``CDR.from_json`` until the ninth round, now with the facts), ``b.facts`` (of a ``CDR``: the
decode's fallback), ``b.rate`` (the pricing, charge rows included), ``b.calls`` (the calls' rows
and column arrays), ``b.charges`` (the charges' column arrays), ``b.rated`` (the ``cdr.rated``
messages), ``s.decode`` (``decode_call``), ``s.plugins``, ``s.aggregate`` (cells and rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
import types
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import cdrkit.pacing
from bench import callgrind
from bench.bench_e2e import templates
from cdr_billing.decode import decode_facts
from cdr_billing.repository import _StoreStatement
from cdr_billing.service import BillingService, call_row, facts, rated_record
from cdr_billing.settings import BillingSettings
from cdr_billing.tariff import default_tariff
from cdr_parser.outcomes import outcome_of
from cdr_stats import service as stats_service
from cdr_stats.aggregate import Aggregate
from cdr_stats.call_fields import decode_call
from cdr_stats.plugins import PluginContext, PluginSet, run_plugins
from cdr_stats.repository import AlertRow
from cdr_stats.service import StatsService
from cdr_stats.settings import StatsSettings
from cdrkit.bus import Message, Record
from cdrkit.db import create_engine, dumps_json
from cdrmodel import CDR, Origin, PayloadKind, RawEnvelope
from cdrmodel.envelope import inline_envelope_json

P, BATCH = 1040, 130  # prepared CDRs; batch size (the e2e run's when the consumers run behind)
NOW = 1_796_299_200  # 2026-12-03 12:00 UTC: the fixtures end a minute before
NOW_DT = datetime.fromtimestamp(NOW, UTC)
DIALECT = create_engine("postgresql+asyncpg://u:p@127.0.0.1:1/none").dialect


def normalised(n: int = P) -> list[bytes]:
    """``n`` normalised CDRs (``cdr.normalized`` values), the same ones every run (kept in a
    file of the temporary directory once made: mapping them is most of a short run)."""
    cache = Path(tempfile.gettempdir()) / f"cdrflow-handlers-cpu-{n}-{NOW}.json"
    with contextlib.suppress(OSError, ValueError):
        return [v.encode() for v in json.loads(cache.read_text())]
    forms = [(unquote_plus(body[4:]), count) for body, count in templates(NOW)]
    out = []
    counter = 0
    for i in range(n):
        xml, count = forms[i % len(forms)]
        uuids = []
        for j in range(count):
            counter += 1
            u = str(uuid.UUID(int=counter))
            uuids.append(u)
            xml = xml.replace(f"@@U{j}@@", u)
        env = inline_envelope_json(
            id=uuid.UUID(int=1 << 100 | i).hex,
            kind=PayloadKind.FREESWITCH_XML,
            received_at=NOW_DT,
            source=Origin(remote_addr="127.0.0.1"),
            content_type="application/x-www-form-urlencoded",
            call_id=uuids[0],
            a_leg=None,
            payload=xml,
            sha256="0" * 64,
        )
        cdr = outcome_of(RawEnvelope.from_json(env), None, 1e9)
        assert isinstance(cdr, CDR)
        out.append(cdr.to_json())
    cache.write_text(json.dumps([v.decode() for v in out]))
    return out


class Sent:
    """The producer: keeps what it is given."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    async def send_many(self, topic: str, records: Sequence[Record]) -> None:
        self.records.extend(records)


class BillingRepo:
    """``BillingRepository`` on PostgreSQL without the round trips: no assignments, the default
    tariff only, the store statement's arguments built, every call new."""

    def __init__(self) -> None:
        self.store_sql = _StoreStatement()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield None

    async def batch_reads(self, subscribers: Iterable[str], session: Any) -> Any:
        list(set(subscribers))
        return {1}, {}

    async def store(self, call_rows: Any, charge_rows: Any, session: Any) -> set[str]:
        self.store_sql.calls.arrays(DIALECT, call_rows)
        self.store_sql.charges.arrays(DIALECT, charge_rows)
        return {r["call_id"] for r in charge_rows}

    async def charges_for(self, call_ids: Iterable[str], session: Any) -> list[Any]:
        assert not list(call_ids)
        return []


class StatsRepo:
    """``StatsRepository`` on PostgreSQL without the round trips: every call new, the deltas
    returned as the merged totals, alerts stored once per dedup key."""

    dialect = "postgresql"

    def __init__(self) -> None:
        self.alert_keys: set[str] = set()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield None

    async def first_seen(self, session: Any, calls: dict[str, int]) -> set[str]:
        ids = sorted(calls)
        [calls[i] for i in ids]
        return set(ids)

    async def add_deltas(self, session: Any, rows: Any, returned: Sequence[str]) -> list[Any]:
        list(zip(*rows, strict=True))
        return [r for r in rows if r[0] in returned]

    async def add_alerts(self, session: Any, found: Any, now: datetime) -> list[AlertRow]:
        unique = {a.dedup_key: a for a in found}
        out = []
        for key, a in sorted(unique.items()):
            dumps_json(a.labels)
            if key not in self.alert_keys:
                self.alert_keys.add(key)
                out.append(AlertRow(len(self.alert_keys), a.kind, a.text, a.labels, a.bucket, now))
        return out


def make_billing() -> BillingService:
    settings = BillingSettings()
    billing = BillingService(settings, BillingRepo(), Sent())  # type: ignore[arg-type]
    tariff = default_tariff(settings.timezone)
    tariff.id = 1
    billing.tariffs = {"default": [tariff]}
    billing._loaded = {1}
    return billing


def make_stats() -> StatsService:
    settings = StatsSettings()
    return StatsService(settings, StatsRepo(), PluginSet.load(settings))  # type: ignore[arg-type]


def batches(items: Sequence[Any], n: int) -> list[Sequence[Any]]:
    return [items[k : min(k + BATCH, n)] for k in range(0, n, BATCH)]


def prepare(mode: str) -> Callable[[int], None]:
    """What ``mode`` runs over the first ``n`` prepared CDRs (everything it needs made first, for
    all ``P``). Sets the process up for it: the slicer never yields (its clock reads still
    run) and the stats service's clock is the fixtures'."""
    cdrkit.pacing.SLICE_S = 1e9
    stats_service.time = types.SimpleNamespace(time=lambda: float(NOW))  # type: ignore[attr-defined]
    values = normalised()
    msgs = [Message("cdr.normalized", 0, i, None, v) for i, v in enumerate(values)]
    billing = make_billing()
    loop = asyncio.new_event_loop()
    if mode in ("billing", "stats"):
        handle = billing.handle_batch if mode == "billing" else make_stats().handle_batch

        def handlers(n: int) -> None:
            async def go() -> None:
                for batch in batches(msgs, n):
                    await handle(batch)

            loop.run_until_complete(go())

        return handlers
    if mode == "b.decode":  # billing's decode: facts(CDR.from_json(v)) for less
        return lambda n: [decode_facts(v) for v in values[:n]] and None
    cdrs = [CDR.from_json(v) for v in values]
    if mode == "b.facts":
        return lambda n: [facts(c) for c in cdrs[:n]] and None
    calls = [facts(c) for c in cdrs]
    if mode == "b.rate":

        def rate(n: int) -> None:
            for batch in batches(calls, n):
                billing.price(batch, {}, NOW_DT)

        return rate
    store = _StoreStatement()
    if mode == "b.calls":

        def call_arrays(n: int) -> None:
            for batch in batches(calls, n):
                store.calls.arrays(DIALECT, [call_row(c, NOW_DT, None) for c in batch])

        return call_arrays
    charges = billing.price(calls, {}, NOW_DT).charges
    assert len(charges) == len(calls)
    if mode == "b.charges":

        def charge_arrays(n: int) -> None:
            for batch in batches(charges, n):
                store.charges.arrays(DIALECT, batch)

        return charge_arrays
    if mode == "b.rated":
        accounts = [c.account for c in calls]
        return lambda n: (
            [rated_record(r, a) for r, a in zip(charges[:n], accounts[:n], strict=True)] and None
        )
    if mode == "s.decode":
        return lambda n: [decode_call(v) for v in values[:n]] and None
    stats = make_stats()
    decoded = [decode_call(v) for v in values]
    plugins = list(stats.plugins.plugins.items())
    if mode == "s.plugins":

        def run(n: int) -> None:
            for call in decoded[:n]:
                run_plugins(plugins, call, PluginContext(call.bucket), stats._plugin_failed)

        return run
    if mode == "s.aggregate":

        def aggregate(n: int) -> None:
            for batch in batches(decoded, n):
                agg = Aggregate()
                for call in batch:
                    agg.add_call(call)
                agg.rows()

        return aggregate
    raise SystemExit(f"no mode {mode!r}")


SELF = ("-m", "bench.handlers_cpu")
MODES = (
    "billing",
    "b.decode",
    "b.facts",
    "b.rate",
    "b.calls",
    "b.charges",
    "b.rated",
    "stats",
    "s.decode",
    "s.plugins",
    "s.aggregate",
)


def count_processes(mode: str, n: int) -> float:
    """Instructions per CDR of ``mode`` from two processes, of n and 2n CDRs (each counted from
    the start of its ``prepare``)."""
    one, two = (callgrind.count(*SELF, "run", mode, str(k)) for k in (n, 2 * n))
    return callgrind.per_item({**one, **two})[mode]


def regions(modes: list[str], n: int) -> None:
    """Each mode once over a batch (warm), then over n and over 2n CDRs, each in a region."""

    def warmed(mode: str) -> tuple[str, Callable[[int], None]]:
        run = prepare(mode)
        run(BATCH)
        return mode, run

    callgrind.n_and_2n(map(warmed, modes), n)


def count(modes: list[str], n: int) -> dict[str, float]:
    """Instructions per CDR of each mode, in ONE process under callgrind (the imports once):
    (I(2n) - I(n)) / n as with two processes."""
    return callgrind.per_item(callgrind.count(*SELF, "regions", ",".join(modes), str(n)))


def main(argv: list[str]) -> None:
    what = argv[0] if argv else "time"
    if what == "run":
        with callgrind.region(f"{argv[1]}@{argv[2]}"):
            prepare(argv[1])(int(argv[2]))
    elif what == "regions":
        regions(argv[1].split(","), int(argv[2]))
    elif what == "count":
        modes = argv[1].split(",") if len(argv) > 1 else list(MODES)
        n = int(argv[2]) if len(argv) > 2 else 260
        for mode, per in count(modes, n).items():
            print(f"{mode}: {per:,.0f} instructions/CDR (n = {n})", flush=True)
    elif what == "count-processes":
        n = int(argv[2]) if len(argv) > 2 else 260
        for mode in argv[1].split(","):
            print(f"{mode}: {count_processes(mode, n):,.0f} instructions/CDR (n = {n})", flush=True)
    elif what == "time":
        rounds = int(argv[1]) if len(argv) > 1 else 7
        for mode in argv[2:] or MODES:
            run = prepare(mode)
            spent = []
            for _ in range(rounds):
                started = time.thread_time()
                run(P)
                spent.append((time.thread_time() - started) / P * 1e6)
            spent.sort()
            print(
                f"{mode}: {spent[0]:.2f} µs/CDR (median {spent[len(spent) // 2]:.2f})", flush=True
            )
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

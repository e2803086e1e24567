"""Instructions per CDR of the consumers' own work, cdrflow's and the stack's floor's, counted by
valgrind's callgrind: the same count for the same inputs whatever else the machine is doing, where
CPU time on this machine moves by ±25 % from run to run (docs/performance.md, "Seventh round").

``python -m bench instr [N] [--budget]`` (default N = 130, ~2 minutes; needs valgrind; with
``--budget`` it exits non-zero when a stage's ratio to its floor is over ``instr_budget.json``:
``over_budget``). Two processes at once, of N and of 2N CDRs, run on the same deterministic
inputs (``bench.consumers_cpu.envelopes(fixed=True)``: the e2e fixtures, uuids from a counter,
one fixed moment) every stage one after the other, each in its own ``bench.callgrind`` region
once the inputs are built; the difference divided by N is a stage's instructions per CDR.
Stages:

* ``ingest``: ``IngestService.accept`` on each url-encoded post with its ``?uuid=`` (decoding,
  the check, the duplicate window, the envelope's JSON) with a producer that keeps nothing; the
  floor's: its form decoding and check. Neither side's HTTP server or produce (the same stack).
* ``parser``: the envelope's decoding, the mapping to a validated CDR, the rows, their checks,
  ``CDR.to_json`` and the store statement's column arrays (``Consumers.parser_all``); the
  floor's: its parse and read of the document, the lz4 packing, its record's JSON and columns.
* ``billing``: decoding ``cdr.normalized``, the facts, the rating, both statements' column arrays
  and the ``cdr.rated`` messages (``Consumers.billing_all``); the floor's: decode and price.
* ``stats``: decoding the call and aggregating it into its cells and delta rows; the floor's:
  decode and count per (bucket, cause).

Ingest's count overstates one item: valgrind does not offer the CPU's SHA extensions, so
``hashlib.sha256`` of the document runs OpenSSL's portable code under callgrind (~27
instructions a byte, ~360,000 of a 13 KB CDR) where the CPU itself spends ~8 µs
(docs/performance.md, "The ninth round together").

Neither side's database or broker work is in these figures (``python -m bench e2e`` has them, in
time): they are the Python each consumer runs per CDR, the part cdrflow's own code decides.
"""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import callgrind

STAGES = ("ingest", "parser", "billing", "stats")
NAMES = tuple(name for stage in STAGES for name in (stage, f"floor {stage}"))  # the run's order


class _NoBus:
    """A producer that keeps nothing: the ingest stage counts ingest's own work, not a bus's."""

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        return None

    async def send_many(self, topic: str, records: Any) -> None:
        return None


def _stages(n: int) -> list[tuple[str, Callable[[], Any]]]:
    from lxml import etree

    from bench import floor_stack
    from bench.consumers_cpu import FIXED_EPOCH, Consumers, envelopes, posts
    from cdr_ingest.service import IngestService
    from cdr_ingest.settings import IngestSettings
    from cdr_stats.aggregate import Aggregate
    from cdr_stats.call_fields import decode_call
    from cdrkit.settings import load
    from cdrmodel import Origin, RawEnvelope

    # As mod_xml_cdr posts: the leg's uuid in the query (``?uuid=``), the document url-encoded.
    bodies = [(body, uuids[0]) for body, _, uuids in posts(n, fixed=True)]
    form = "application/x-www-form-urlencoded"
    origin = Origin(remote_addr="127.0.0.1")
    service = IngestService(load(IngestSettings, bus_url="memory://instr"), _NoBus())

    def ingest() -> None:
        async def accept_all() -> None:
            for body, leg in bodies:
                await service.accept(body, form, leg, origin)

        asyncio.run(accept_all())

    def floor_ingest() -> None:
        for body, _ in bodies:
            doc = floor_stack.form_field(body)
            assert doc
            etree.fromstring(doc, floor_stack._CHECK)

    msgs = envelopes(n, fixed=True)
    c = Consumers(msgs, datetime.fromtimestamp(FIXED_EPOCH, UTC))
    docs = [(RawEnvelope.from_json(m).payload or "").encode() for m in msgs]
    records = [json.dumps(floor_stack.normalise(d)[0]).encode() for d in docs]

    def floor_parser() -> None:
        for k in range(0, n, 130):
            rows = [floor_stack.normalise(d) for d in docs[k : k + 130]]
            keep = [(r, raw) for r, raw in rows if r["call_id"]]
            columns = [[r[col] for r, _ in keep] for col in floor_stack._COLUMNS]
            columns.append([raw for _, raw in keep])
            for r, _ in keep:
                json.dumps(r).encode()

    def floor_billing() -> None:
        for k in range(0, n, 130):
            batch = [json.loads(v) for v in records[k : k + 130]]
            [floor_stack.price(r["callee"], r["billsec"]) for r in batch]

    def floor_stats() -> None:
        counts: dict[tuple[int, str], int] = {}
        for v in records:
            r = json.loads(v)
            key = (int((r["ended_at"] or 0) // 360), r["hangup_cause"] or "")
            counts[key] = counts.get(key, 0) + 1

    def stats() -> None:
        for k in range(0, n, 130):
            agg = Aggregate()
            for v in c.values[k : k + 130]:
                agg.add_call(decode_call(v))
            agg.rows()

    return [
        ("ingest", ingest),
        ("floor ingest", floor_ingest),
        ("parser", c.parser_all),
        ("floor parser", floor_parser),
        ("billing", c.billing_all),
        ("floor billing", floor_billing),
        ("stats", stats),
        ("floor stats", floor_stats),
    ]


def _child(n: int) -> None:
    stages = _stages(n)
    assert tuple(name for name, _ in stages) == NAMES
    gc.collect()  # the inputs out of the collector's way
    gc.freeze()
    for name, run in stages:
        with callgrind.region(f"{name}@{n}"):
            run()
            gc.collect()  # the stage's own garbage, in its own count


def count(n: int) -> dict[str, int]:
    """Instructions of each stage on ``n`` CDRs, in one callgrind run (regions ``stage@n``)."""
    return callgrind.count("-m", "bench.instructions", "--child", str(n))


def per_cdr(n: int) -> dict[str, float]:
    """Instructions per CDR of each stage: (count at 2n - count at n) / n (both runs at once)."""
    with ThreadPoolExecutor(2) as runs:
        one, two = runs.map(count, (n, 2 * n))
    return callgrind.per_item({**one, **two})


def report(figures: dict[str, float]) -> str:
    lines = ["stage       cdrflow instr/CDR   floor instr/CDR   ratio"]
    total = floor_total = 0.0
    for stage in STAGES:
        ours, floor = figures[stage], figures[f"floor {stage}"]
        total += ours
        floor_total += floor
        lines.append(f"{stage:<10} {ours:>18,.0f} {floor:>17,.0f} {ours / floor:>7.2f}x")
    lines.append(
        f"{'together':<10} {total:>18,.0f} {floor_total:>17,.0f} {total / floor_total:>7.2f}x"
    )
    return "\n".join(lines)


BUDGET = Path(__file__).with_name("instr_budget.json")


def over_budget(figures: dict[str, float], budget: dict[str, Any]) -> list[str]:
    """The stages whose ratio to the floor's count (both counted in the same run, so a faster or
    slower libxml2 or CPython moves both) is above the recorded one by more than the budget's
    tolerance, each with its figures; empty when every stage is within. A stage missing from
    either side is over: the budget and the stages must name the same work."""
    tolerance = float(budget["tolerance"])
    out = []
    for stage in STAGES:
        limit = budget["ratios"].get(stage)
        ours, floor = figures.get(stage), figures.get(f"floor {stage}")
        if limit is None or ours is None or not floor:
            out.append(f"{stage}: not in both the budget and the run")
            continue
        ratio = ours / floor
        if ratio > float(limit) * (1 + tolerance):
            out.append(
                f"{stage}: {ratio:.3f}x the floor's instructions, over the budget's "
                f"{float(limit):.3f}x + {tolerance:.0%} ({ours:,.0f} per CDR)"
            )
    return out


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        _child(int(argv[1]))
        return
    check = "--budget" in argv
    argv = [a for a in argv if a != "--budget"]
    n = int(argv[0]) if argv else 130
    if shutil.which("valgrind") is None:
        raise SystemExit("bench instr needs valgrind (Debian: apt-get install valgrind)")
    print(f"callgrind, N = {n} and {2 * n} CDRs, instructions per CDR", flush=True)
    figures = per_cdr(n)
    print(report(figures))
    if check:
        budget = json.loads(BUDGET.read_text())
        over = over_budget(figures, budget)
        for line in over:
            print(f"OVER BUDGET {line}")
        if over:
            raise SystemExit(f"{len(over)} stage(s) over {BUDGET.name} ({budget['recorded']})")
        print(f"every stage within {BUDGET.name} ({budget['recorded']})")


if __name__ == "__main__":
    main(sys.argv[1:])

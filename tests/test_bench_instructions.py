"""``python -m bench instr``: deterministic inputs, and callgrind's dumps read as one per stage."""

from __future__ import annotations

import json
import shutil

import pytest

from bench.consumers_cpu import envelopes
from bench.instructions import BUDGET, NAMES, STAGES, _stages, count, over_budget, report
from cdrmodel import RawEnvelope


def test_fixed_inputs_are_the_same_bytes_on_every_run_and_each_a_new_call() -> None:
    first, second = envelopes(6, fixed=True), envelopes(6, fixed=True)
    assert first == second
    calls = [RawEnvelope.from_json(m).call_id for m in first]
    assert len(set(calls)) == 6
    assert envelopes(2) != envelopes(2)  # without ``fixed``: fresh uuids, as the e2e load


def test_every_stage_runs_in_the_order_the_dumps_are_read() -> None:
    stages = _stages(4)
    assert tuple(name for name, _ in stages) == NAMES
    for _, run in stages:
        run()


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_callgrind_counts_each_stage_apart() -> None:
    figures = {name.removesuffix("@2"): v for name, v in count(2).items()}
    assert list(figures) == list(NAMES)
    # A dump read for the wrong stage shows: parsing two documents (libxml2, the mapping) costs
    # millions of instructions, the floor's pricing or counting of two records far less, and the
    # moments before the first stage (instrumentation just switched on) almost nothing.
    assert figures["parser"] > 1_000_000
    assert figures["floor parser"] > 1_000_000
    for cheap in ("floor billing", "floor stats"):
        assert figures[cheap] < figures["floor parser"] / 2, cheap
    assert "together" in report({name: float(v) for name, v in figures.items()})


def test_the_budget_holds_each_stage_to_its_ratio_to_the_floor() -> None:
    budget = json.loads(BUDGET.read_text())
    assert set(budget["ratios"]) == set(STAGES)
    # The run the budget was recorded from (2026-12-04) is within it.
    recorded = {
        "ingest": 1_775_243.0,
        "floor ingest": 1_064_667.0,
        "parser": 1_771_643.0,
        "floor parser": 1_446_070.0,
        "billing": 191_529.0,
        "floor billing": 52_509.0,
        "stats": 101_120.0,
        "floor stats": 37_544.0,
    }
    assert over_budget(recorded, budget) == []
    # A stage 5 % dearer is over, 2 % is within; the floor getting dearer with it (a slower
    # libxml2, another CPython) is not over.
    assert over_budget({**recorded, "parser": recorded["parser"] * 1.02}, budget) == []
    dearer = {**recorded, "parser": recorded["parser"] * 1.05}
    (line,) = over_budget(dearer, budget)
    assert line.startswith("parser: 1.28")
    both = {**dearer, "floor parser": recorded["floor parser"] * 1.05}
    assert over_budget(both, budget) == []
    # A stage the run did not count is over, not passed.
    missing = {k: v for k, v in recorded.items() if k != "stats"}
    assert over_budget(missing, budget) == ["stats: not in both the budget and the run"]

"""``python -m bench instr``: deterministic inputs, and callgrind's dumps read as one per stage."""

from __future__ import annotations

import shutil

import pytest

from bench.consumers_cpu import envelopes
from bench.instructions import NAMES, _stages, count, report
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

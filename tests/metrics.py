"""Metric checks that can fail: a sample's value before and after, from the process registry.

A test that only looks for a metric's name in ``/metrics`` passes before anything increments it
(prometheus_client lists a labelled counter once the label is used anywhere, and an unlabelled one
always). Compare ``sample()`` before and after the action instead.
"""

from __future__ import annotations

from prometheus_client import REGISTRY


def sample(name: str, **labels: str) -> float:
    """The current value of ``name`` (with ``_total`` for a counter) and ``labels``; 0 if unset."""
    return REGISTRY.get_sample_value(name, labels) or 0.0

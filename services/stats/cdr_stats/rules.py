"""Threshold rules, evaluated per bucket and dimension value on the merged (all instances)
totals returned by the batch's upsert: a rule fires at most once per bucket, value and rule
(its alert's dedup key), not per call."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cdr_stats.aggregate import Cell, Key
from cdr_stats.plugins import Alert
from cdr_stats.settings import Rule

# Metrics a rule needs: the consumer always writes them (with a zero delta if need be), so the
# upsert's RETURNING carries their merged totals for every touched cell.
RULE_METRICS = ("attempts", "answered", "zero_duration", "sip_class:5xx")


def measure(cell: Mapping[str, list[float]], name: str) -> float | None:
    attempts = cell.get("attempts", [0])[0]
    if not attempts:
        return None
    if name == "asr":
        return cell.get("answered", [0])[0] / attempts
    if name == "zero_duration_ratio":
        return cell.get("zero_duration", [0])[0] / attempts
    return cell.get("sip_class:5xx", [0])[0] / attempts  # sip_5xx_share


def evaluate(rules: Iterable[Rule], totals: Mapping[Key, Cell]) -> list[Alert]:
    alerts: list[Alert] = []
    for rule in rules:
        for (bucket, dim, value), cell in totals.items():
            if dim not in rule.dimensions:
                continue
            attempts = cell.get("attempts", [0])[0]
            if attempts < rule.min_attempts:
                continue
            got = measure(cell, rule.measure)
            if got is None:
                continue
            hit = got > rule.threshold if rule.op == "above" else got < rule.threshold
            if hit:
                alerts.append(
                    Alert(
                        "rule",
                        f"{rule.name}: {rule.measure} {got:.2f} is {rule.op} {rule.threshold:g} "
                        f"for {dim} {value} ({int(attempts)} calls in the bucket)",
                        {"rule": rule.name, dim: value},
                        bucket,
                    )
                )
    return alerts

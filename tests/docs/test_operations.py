"""docs/operations.md is the runbook: every alert in deploy/prometheus/alerts.yml has a section
there saying what it means and what to do."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_alert_has_a_runbook_section() -> None:
    alerts = re.findall(
        r"^\s*- alert:\s*(\S+)", (ROOT / "deploy/prometheus/alerts.yml").read_text(), re.M
    )
    assert len(alerts) >= 5
    runbook = (ROOT / "docs/operations.md").read_text()
    sections = dict(re.findall(r"^### (\S+)\n(.*?)(?=^#{2,3} |\Z)", runbook, re.M | re.S))
    missing = [a for a in alerts if a not in sections]
    assert not missing, f"alerts without a section in docs/operations.md: {missing}"
    for alert in alerts:
        assert "**Means:**" in sections[alert], alert
        assert "**Do:**" in sections[alert], alert
    stale = sorted(set(sections) - set(alerts))
    assert not stale, f"docs/operations.md describes alerts that no longer exist: {stale}"

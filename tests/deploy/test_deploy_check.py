"""deploy/check.py (make lint) passes on the committed files, and its Prometheus part fails on
a rule that names a metric the code does not register."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_deploy_check_passes() -> None:
    run = subprocess.run(
        [sys.executable, "deploy/check.py"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert "Kubernetes objects validated" in run.stdout


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    run = subprocess.run(
        ["promtool", "test", "rules", "tests/alerts_test.yml"],
        cwd=ROOT / "deploy" / "prometheus",
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_metric_names_come_from_the_code() -> None:
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import check
    finally:
        sys.path.pop(0)
    assert check.KNOWN_METRICS["cdrflow_ingest_requests_total"] == "counter"
    assert check.KNOWN_METRICS["cdrflow_bus_consumer_lag_messages"] == "gauge"
    assert check.metric_type("cdrflow_ingest_request_seconds_bucket") == "histogram_series"
    assert (
        check.metric_type("cdrflow_parser_batch_seconds") is None
    )  # the old hand-written copy had it

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


def test_every_dashboard_query_names_a_metric_the_code_registers() -> None:
    import json

    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import check
    finally:
        sys.path.pop(0)
    dashboards = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
    assert {d.stem for d in dashboards} >= {"pipeline", "carriers", "billing", "edge"}
    queries = 0
    for path in dashboards:
        for title, expr in check.dashboard_queries(json.loads(path.read_text())):
            names = list(check.metric_names(expr.replace("$__rate_interval", "5m")))
            assert names, f"{path.name} {title}: no metric in {expr}"
            for name in names:
                assert check.metric_type(name) is not None, f"{path.name} {title}: {name}"
            queries += 1
    assert queries >= 15
    # The same check refuses a name the code does not register.
    bad = list(check.metric_names("sum(rate(cdrflow_ingest_posts_total[5m]))"))
    assert bad == ["cdrflow_ingest_posts_total"]
    assert check.metric_type(bad[0]) is None

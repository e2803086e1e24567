"""pytest plugin: cdrflow's real-infrastructure fixtures (loaded by ``-p cdrkit.testing.plugin``).

- ``pg_url``: a fresh PostgreSQL database for the test session, dropped after (server and role
  from ``PGHOST``/``PGPORT``/``PGUSER``/``PGPASSWORD`` or ``CDRFLOW_TEST_PG_ADMIN``).
- ``tansu`` / ``kafka_url``: a Tansu Kafka-protocol broker on a free loopback port.
- ``moto_s3`` / ``s3_store_url``: a moto S3 server on a free loopback port; a fresh bucket per test.

Under ``CI=true`` a skipped test fails the run: a skip there hides a missing install step.
"""

from __future__ import annotations

import os

import pytest

from cdrkit.testing.postgres import fresh_pg_url, pg_url
from cdrkit.testing.s3 import moto_s3, s3_store_url
from cdrkit.testing.tansu import fresh_tansu, kafka_url, tansu

__all__ = [
    "fresh_pg_url",
    "fresh_tansu",
    "kafka_url",
    "moto_s3",
    "pg_url",
    "s3_store_url",
    "tansu",
]

_skipped: list[tuple[str, str]] = []


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append((report.nodeid, _reason(report)))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        _skipped.append((report.nodeid, _reason(report)))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _under_ci() and _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not (_under_ci() and _skipped):
        return
    terminalreporter.section("skipped under CI=true", sep="=", red=True, bold=True)
    terminalreporter.write_line(
        f"{len(_skipped)} test(s) skipped under CI=true; a skip hides a missing install step, so "
        "the run fails:",
        red=True,
    )
    for nodeid, reason in _skipped:
        terminalreporter.write_line(f"  {nodeid}: {reason}")

"""The CI entry point refuses to pass on a half-installed machine: a skipped test fails it under
CI=true, ``make services`` fails when PostgreSQL is not answering, ``make chromium`` fails when it
cannot install the browser."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

from tests.inner_pytest import inner_pytest_command

ROOT = Path(__file__).resolve().parent.parent

SKIPPING = """
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("no frobnicator installed")
"""


def _pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        inner_pytest_command(tmp_path / "test_skipping.py"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_skip_fails_the_run_under_ci(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "true")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 test(s) skipped under CI=true" in done.stdout
    assert "test_skipping.py::test_skips: no frobnicator installed" in done.stdout


def test_a_skip_is_only_reported_outside_ci(tmp_path: Path) -> None:
    done = _pytest(tmp_path, None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 1 skipped" in done.stdout


def test_ci_run_sets_ci_and_runs_make_test() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert 'export CI="${CI:-true}"' in script
    assert script.rstrip().endswith("make test")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_make_services_fails_loudly_when_postgresql_is_not_answering() -> None:
    port = str(_closed_port())
    done = subprocess.run(
        ["make", "-s", "services"],
        cwd=ROOT,
        env={**os.environ, "PGHOST": "127.0.0.1", "PGPORT": port},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert f"PostgreSQL is not answering on 127.0.0.1:{port}" in done.stderr


def _fake_apt(tmp_path: Path, code: int) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "apt.log"}\nexit {code}\n')
    apt.chmod(apt.stat().st_mode | stat.S_IXUSR)
    (bin_dir / "sudo").symlink_to("/usr/bin/env")  # as a non-root user: run the fake as is
    return bin_dir


def _make_chromium(tmp_path: Path, code: int) -> subprocess.CompletedProcess[str]:
    bin_dir = _fake_apt(tmp_path, code)
    return subprocess.run(
        ["make", "-s", "chromium", "CHROMIUM=cdrflow-no-such-browser"],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_make_chromium_installs_it_with_apt(tmp_path: Path) -> None:
    done = _make_chromium(tmp_path, 0)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "apt.log").read_text().splitlines() == [
        "update -qq",
        "install -y -qq chromium",
    ]


def test_make_chromium_fails_when_it_cannot_install(tmp_path: Path) -> None:
    done = _make_chromium(tmp_path, 100)
    assert done.returncode != 0
    assert "cannot install chromium" in done.stderr

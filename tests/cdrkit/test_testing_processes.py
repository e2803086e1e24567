"""A test run killed at any point leaves no process behind: a pytest that started a Tansu broker,
a server with a child of its own and a private PostgreSQL cluster is SIGKILLed, and every one of
those processes is gone within seconds (the watchdog stopped them)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from cdrkit.testing.processes import spawn, stop
from tests.inner_pytest import inner_pytest_command

HOLDER = """
import os, pathlib, time
from cdrkit.testing.postgres import PrivateCluster
from cdrkit.testing.processes import spawn

def test_hold(tansu):
    out = pathlib.Path(os.environ["PIDS_FILE"])
    grandchild = out.with_suffix(".grandchild")
    server = spawn(["sh", "-c", f"sleep 300 & echo $! > {grandchild}; wait"])
    cluster = PrivateCluster()
    cluster.start()
    postmaster = (cluster.data / "postmaster.pid").read_text().split()[0]
    while not grandchild.exists() or not grandchild.read_text().strip():
        time.sleep(0.05)
    pids = [tansu._process.pid, server.pid, int(grandchild.read_text()), int(postmaster)]
    tmp = out.with_suffix(".tmp")
    tmp.write_text(" ".join(map(str, pids)))
    tmp.rename(out)
    time.sleep(300)
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie whose new parent never reaps it is gone for our purpose)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_sigkilled_pytest_leaves_no_process_behind(tmp_path: Path) -> None:
    (tmp_path / "test_holder.py").write_text(HOLDER)
    pids_file = tmp_path / "pids"
    pytest_proc = subprocess.Popen(
        inner_pytest_command(tmp_path / "test_holder.py"),
        env={**os.environ, "PIDS_FILE": str(pids_file)},
        stdout=(tmp_path / "pytest.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while not pids_file.exists():
            assert pytest_proc.poll() is None, (tmp_path / "pytest.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the inner pytest never started its servers"
            time.sleep(0.1)
        pids = [int(p) for p in pids_file.read_text().split()]
        assert all(map(_running, pids)), pids

        os.kill(pytest_proc.pid, signal.SIGKILL)
        pytest_proc.wait(10)

        deadline = time.monotonic() + 10
        while any(map(_running, pids)) and time.monotonic() < deadline:
            time.sleep(0.1)
        names = ["tansu", "server", "server's child", "postmaster"]
        left = {name: pid for name, pid in zip(names, pids, strict=True) if _running(pid)}
        assert not left, f"still running after pytest was SIGKILLed: {left}"
    finally:
        if pytest_proc.poll() is None:
            pytest_proc.kill()
            pytest_proc.wait(10)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "child"
    proc = spawn(["sh", "-c", f"sleep 300 & echo $! > {marker}; wait"])
    deadline = time.monotonic() + 10
    while not (marker.exists() and marker.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(marker.read_text())
    assert _running(child)
    stop(proc, timeout_s=5)
    deadline = time.monotonic() + 5
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(child), "the leader's child outlived stop()"

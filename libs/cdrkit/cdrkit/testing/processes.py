"""No process the tests start outlives the test run, even when pytest is SIGKILLed.

A server a test starts (the Tansu broker, a ``cdrflow run``/``serve`` subprocess, headless
Chromium, a private PostgreSQL cluster) runs in a process group of its own (``spawn``), so that
stopping it stops its children too and a Ctrl-C meant for pytest does not reach it first. Each one
is registered with a **watchdog**: one small process per pytest process, in its own session,
started on first use (``python -m cdrkit.testing.processes <pytest pid>``). It reads
registrations on a pipe from pytest; when that pipe reaches end-of-file (pytest exited, however
it died: the kernel closes the pipe of a SIGKILLed process) or its parent pid changes, it signals
every process group (or PostgreSQL postmaster, through its ``postmaster.pid``) still registered,
waits up to ``GRACE_S`` and then SIGKILLs what is left.

A fixture that stops its process at session end calls ``forget``; what a test forgot to stop is
stopped by the watchdog when pytest exits. moto's S3 server runs in a thread of the pytest process
and dies with it.

``prctl(PR_SET_PDEATHSIG)`` alone would not do: it fires when the *thread* that forked the child
ends, and the tests start servers from worker threads (``asyncio.to_thread``) that end on their own.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

GRACE_S = 3.0
_POLL_S = 0.25


class _Client:
    """pytest's side: the pipe to this process's watchdog."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cdrkit.testing.processes", str(self.owner)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # a signal to pytest's process group does not reach it
        )
        assert self.proc.stdin is not None
        self.pipe: IO[bytes] = self.proc.stdin
        self.lock = threading.Lock()

    def send(self, line: str) -> None:
        with self.lock, contextlib.suppress(OSError, ValueError):
            self.pipe.write(line.encode() + b"\n")
            self.pipe.flush()


_client: _Client | None = None
_client_lock = threading.Lock()


def _watchdog() -> _Client:
    global _client  # noqa: PLW0603 (one watchdog per process)
    with _client_lock:
        if _client is None or _client.owner != os.getpid() or _client.proc.poll() is not None:
            _client = _Client()
        return _client


def watch_group(pgid: int, sig: int = signal.SIGTERM) -> None:
    """Have the watchdog send ``sig`` to process group ``pgid`` (then SIGKILL) if pytest dies."""
    _watchdog().send(f"group {pgid} {int(sig)}")


def watch_postmaster(data_dir: Path) -> None:
    """Have the watchdog stop the PostgreSQL postmaster of ``data_dir`` (immediate shutdown,
    SIGQUIT) if pytest dies; ``pg_ctl`` daemonises the postmaster, so its pid is read from
    ``postmaster.pid`` at that moment."""
    _watchdog().send(f"postmaster {int(signal.SIGQUIT)} {data_dir}")


def forget_group(pgid: int) -> None:
    if _client is not None and _client.owner == os.getpid():
        _client.send(f"forget-group {pgid}")


def forget_postmaster(data_dir: Path) -> None:
    if _client is not None and _client.owner == os.getpid():
        _client.send(f"forget-postmaster {data_dir}")


def spawn(
    command: Sequence[str], *, watch_signal: int = signal.SIGTERM, **popen: Any
) -> subprocess.Popen[bytes]:
    """``subprocess.Popen`` in a new session (its own process group), watched by the watchdog,
    which sends ``watch_signal`` (then SIGKILL) to the group if pytest dies.

    Stop it with ``stop`` (or signal its group yourself and call ``forget_group``).
    """
    proc: subprocess.Popen[bytes] = subprocess.Popen(list(command), start_new_session=True, **popen)
    watch_group(proc.pid, watch_signal)
    return proc


def stop(
    proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout_s: float = 15.0
) -> int | None:
    """Signal ``proc``'s process group, wait, SIGKILL the group on timeout; return the exit code."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout_s)
    # Children that outlived the leader.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    forget_group(proc.pid)
    return proc.returncode


# ---------------------------------------------------------------------------------------------
# The watchdog process


def _postmaster_pid(data_dir: str) -> int | None:
    try:
        return int((Path(data_dir) / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _alive(send: Callable[[int, int], None], ident: int) -> bool:
    """Whether ``send(ident, 0)`` (``os.killpg`` or ``os.kill``) finds a process."""
    try:
        send(ident, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_everything(groups: dict[int, int], postmasters: dict[str, int]) -> None:
    pids = {d: _postmaster_pid(d) for d in postmasters}
    for pgid, sig in groups.items():
        with contextlib.suppress(OSError):
            os.killpg(pgid, sig)
    for data_dir, sig in postmasters.items():
        pid = pids[data_dir]
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        if not any(_alive(os.killpg, g) for g in groups) and not any(
            _alive(os.kill, p) for p in pids.values() if p is not None
        ):
            return
        time.sleep(0.05)
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    for pid in pids.values():
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _handle(line: str, groups: dict[int, int], postmasters: dict[str, int]) -> None:
    kind, _, rest = line.partition(" ")
    if kind == "group":
        pgid, sig = rest.split()
        groups[int(pgid)] = int(sig)
    elif kind == "forget-group":
        groups.pop(int(rest), None)
    elif kind == "postmaster":
        sig, data_dir = rest.split(" ", 1)
        postmasters[data_dir] = int(sig)
    elif kind == "forget-postmaster":
        postmasters.pop(rest, None)


def watchdog_main(parent: int) -> None:
    """Read registrations from stdin until pytest is gone, then stop what is registered."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: dict[int, int] = {}
    postmasters: dict[str, int] = {}
    stdin = sys.stdin.buffer.raw if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
    fd = stdin.fileno()
    pending = b""
    while os.getppid() == parent:
        ready, _, _ = select.select([fd], [], [], _POLL_S)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:  # end of file: pytest exited or was killed
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            with contextlib.suppress(ValueError):
                _handle(raw.decode(), groups, postmasters)
    _stop_everything(groups, postmasters)


if __name__ == "__main__":
    watchdog_main(int(sys.argv[1]))

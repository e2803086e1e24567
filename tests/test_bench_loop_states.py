"""``bench.bench_e2e.LoopStates``: the bench's split of a one-process run's loop thread's wall
time (on a CPU, waiting for one, waiting for the GIL, idle in epoll), checked on three child
processes whose main thread is known to do one of them."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.bench_e2e import LoopStates

CHILDREN = {
    # The main thread runs Python all the time.
    "busy": "while True: pass",
    # The main thread sleeps in epoll, as an asyncio loop with nothing to run does.
    "idle": (
        "import selectors, socket\n"
        "a, b = socket.socketpair()\n"
        "s = selectors.DefaultSelector(); s.register(a, selectors.EVENT_READ)\n"
        "while True: s.select(1.0)"
    ),
    # Another thread runs Python all the time; the main thread's sleeps end with a wait for
    # the GIL, which that thread gives up only every switch interval (5 ms).
    "gil": (
        "import threading, time\n"
        "def spin():\n"
        "    while True: pass\n"
        "threading.Thread(target=spin, daemon=True).start()\n"
        "while True: time.sleep(0.0001)"
    ),
}


def _states(kind: str) -> dict[str, float]:
    child = subprocess.Popen([sys.executable, "-c", CHILDREN[kind]])
    try:
        time.sleep(0.3)
        states = LoopStates(child.pid)
        time.sleep(1.5)
        return states.stop()
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("kind", sorted(CHILDREN))
def test_loop_states_tell_running_idle_and_gil_waits_apart(kind: str) -> None:
    s = _states(kind)
    assert s["samples"] > 100
    total = s["on_cpu"] + s["runnable"] + s["gil"] + s["idle"] + s["other"]
    assert total == pytest.approx(1.0, abs=0.1)
    if kind == "busy":
        assert s["on_cpu"] + s["runnable"] > 0.8
        assert s["gil"] < 0.1
        assert s["idle"] < 0.1
    elif kind == "idle":
        assert s["idle"] > 0.8
        assert s["on_cpu"] < 0.1
        assert s["gil"] < 0.1
    else:
        assert s["gil"] > 0.5
        assert s["idle"] < 0.1
